"""tensorflow-datasets builders for VOC 2012 and the other benchmarks, from a manual directory.

The stock `voc/2012` of TFDS is detection-only (no masks), and VOC cannot be
downloaded by the builder, so this one reads what the user holds:

    manual_dir/
      VOCdevkit/VOC2012/      (or VOC2012/ directly): JPEGImages, SegmentationClass, ImageSets
      benchmark_RELEASE/      optional SBD, for the "trainaug" split
      SegmentationClassAug/   optional, instead of SBD (also looked for inside VOC2012/)

Usage (importing this module registers the builder as "voc_segmentation"):

    import tensorflow_datasets as tfds
    import ema_keras.data.tfds_builder  # noqa: F401

    config = tfds.download.DownloadConfig(manual_dir="/data/voc_manual")
    train = tfds.load("voc_segmentation", split="train", data_dir="/data/tfds",
                      download_and_prepare_kwargs={"download_config": config})
    # or: builder = tfds.builder("voc_segmentation", data_dir="/data/tfds")
    #     builder.download_and_prepare(download_config=config)
    #     train = builder.as_dataset(split="train")

TFDS decodes JPEGs with the fast IDCT, a few levels off Pillow and our
reader; `load_voc_segmentation` skips TFDS's image decoding and decodes like
the folder reader, so both give the same pixels.

Splits: train, val, trainval, and trainaug when SBD or SegmentationClassAug is
present. Features: `image_id` (text), `image` (H, W, 3) uint8 (the JPEG bytes
as they are), `label` (H, W, 1) uint8 class ids with 255 = ignore. The dataset
feeds `train_dataset` / `eval_dataset` directly.

The other datasets of `ema_keras.data.datasets` have a builder each, named
`<dataset>_segmentation` (`cityscapes_segmentation`,
`pascal_context_segmentation`, `pascal_context60_segmentation`,
`coco_stuff164k_segmentation`, `coco_stuff10k_segmentation`): the manual
directory is the dataset's folder as it ships (docs/datasets.md), the splits
are the dataset's, and labels are stored as training ids (the dataset's label
map applied once). `load_segmentation("cityscapes", "val", manual_dir=...)`
loads any of them as `load_voc_segmentation` does.
"""

import inspect
import os

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from ema_keras.data import cityscapes, coco_stuff, pascal_context
from ema_keras.data.image_io import load_label
from ema_keras.data.voc import find_voc_root, read_voc_split, trainaug_examples

_MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__[__doc__.index("manual_dir/") : __doc__.index("Usage")]
_CITATION = """@misc{pascal-voc-2012,
  author = "Everingham, M. and Van~Gool, L. and Williams, C. K. I. and Winn, J. and Zisserman, A.",
  title = "The {PASCAL} {V}isual {O}bject {C}lasses {C}hallenge 2012 {(VOC2012)} {R}esults",
  howpublished = "http://www.pascal-network.org/challenges/VOC/voc2012/workshop/index.html"}
"""


def _find_optional(manual_dir, voc_root):
    sbd_root = os.path.join(manual_dir, "benchmark_RELEASE")
    sbd_root = sbd_root if os.path.isdir(sbd_root) else None
    aug_dir = None
    for candidate in (
        os.path.join(manual_dir, "SegmentationClassAug"),
        os.path.join(voc_root, "SegmentationClassAug"),
    ):
        if os.path.isdir(candidate):
            aug_dir = candidate
            break
    return sbd_root, aug_dir


class VocSegmentation(tfds.core.GeneratorBasedBuilder):
    """PASCAL VOC 2012 semantic segmentation (with the SBD trainaug split when present)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "VOC 2012 train/val/trainval, SBD trainaug."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_DOWNLOAD_INSTRUCTIONS

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls):
        # TFDS 4.9 finds this file through `importlib_resources`, a package its
        # wheel does not require; the class's own source file is the same answer.
        return epath.Path(inspect.getfile(cls))

    def _info(self):
        return self.dataset_info_from_configs(
            description="PASCAL VOC 2012 semantic segmentation: 20 object classes plus background.",
            features=tfds.features.FeaturesDict(
                {
                    "image_id": tfds.features.Text(),
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        voc_root = find_voc_root(manual_dir)
        splits = {
            split: self._generate_examples(read_voc_split(voc_root, split))
            for split in ("train", "val", "trainval")
        }
        sbd_root, aug_dir = _find_optional(manual_dir, voc_root)
        if sbd_root or aug_dir:
            examples = trainaug_examples(voc_root, sbd_root=sbd_root, aug_dir=aug_dir)
            splits["trainaug"] = self._generate_examples(examples)
        return splits

    def _generate_examples(self, examples):
        for example in examples:
            label = load_label(example.label_path, label_map=example.label_map)
            yield example.image_id, {
                "image_id": example.image_id,
                "image": example.image_path,
                "label": label[..., None],
            }


class _BenchmarkSegmentation(VocSegmentation, skip_registration=True):
    """A dataset of `ema_keras.data.datasets` read from its folder as it ships."""

    DATASET = None  # the dataset_spec.Dataset
    IMAGE_FORMAT = "jpeg"  # how the images are stored (their bytes are kept as they are)
    HOMEPAGE = ""
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The dataset's splits, labels as training ids."}

    def _info(self):
        return self.dataset_info_from_configs(
            description=self.DATASET.description,
            features=tfds.features.FeaturesDict(
                {
                    "image_id": tfds.features.Text(),
                    "image": tfds.features.Image(
                        shape=(None, None, 3), encoding_format=self.IMAGE_FORMAT
                    ),
                    "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
        )

    def _split_generators(self, dl_manager):
        root = self.DATASET.find_root(os.fspath(dl_manager.manual_dir))
        return {
            split: self._generate_examples(self.DATASET.read_split(root, split))
            for split in self.DATASET.splits
        }


class CityscapesSegmentation(_BenchmarkSegmentation):
    """Cityscapes gtFine, 19 train ids."""

    DATASET, IMAGE_FORMAT, HOMEPAGE = cityscapes.DATASET, "png", cityscapes.URL
    MANUAL_DOWNLOAD_INSTRUCTIONS = "leftImg8bit/ and gtFine/ of Cityscapes, unzipped."


class PascalContextSegmentation(_BenchmarkSegmentation):
    """PASCAL Context, 59 classes, background ignored."""

    DATASET, HOMEPAGE = pascal_context.DATASET, pascal_context.URL
    MANUAL_DOWNLOAD_INSTRUCTIONS = "VOC2010/ with SegmentationClassContext/ (mmsegmentation)."


class PascalContext60Segmentation(_BenchmarkSegmentation):
    """PASCAL Context, 60 classes, background class 0."""

    DATASET, HOMEPAGE = pascal_context.DATASET_60, pascal_context.URL
    MANUAL_DOWNLOAD_INSTRUCTIONS = PascalContextSegmentation.MANUAL_DOWNLOAD_INSTRUCTIONS


class CocoStuff164kSegmentation(_BenchmarkSegmentation):
    """COCO-Stuff-164k, 171 classes."""

    DATASET, HOMEPAGE = coco_stuff.DATASET_164K, coco_stuff.URL
    MANUAL_DOWNLOAD_INSTRUCTIONS = "images/{train2017,val2017} and annotations/ (stuffthingmaps)."


class CocoStuff10kSegmentation(_BenchmarkSegmentation):
    """COCO-Stuff-10k v1.1, 171 classes (reads the .mat labels: needs scipy)."""

    DATASET, HOMEPAGE = coco_stuff.DATASET_10K, coco_stuff.URL
    MANUAL_DOWNLOAD_INSTRUCTIONS = "cocostuff-10k-v1.1: images/, annotations/*.mat, imageLists/."


BUILDERS = {
    builder.DATASET.name: builder
    for builder in (
        CityscapesSegmentation,
        PascalContextSegmentation,
        PascalContext60Segmentation,
        CocoStuff164kSegmentation,
        CocoStuff10kSegmentation,
    )
}


def load_voc_segmentation(split, *, data_dir=None, manual_dir=None, input_context=None):
    """`tfds.load` of this builder (prepared from `manual_dir` if needed), decoded like our reader.

    Returns a dataset of dicts of image_id, image (H, W, 3) uint8 and label
    (H, W) uint8, the same examples as `examples_dataset(read_voc_split(...))`
    (in TFDS's file order).
    """
    return load_segmentation(
        "voc", split, data_dir=data_dir, manual_dir=manual_dir, input_context=input_context
    )


def load_segmentation(dataset, split, *, data_dir=None, manual_dir=None, input_context=None):
    """`load_voc_segmentation` for any dataset name of `ema_keras.data.datasets`."""
    from ema_keras.data.decode import examples_dataset

    builder = VocSegmentation if dataset == "voc" else BUILDERS.get(dataset)
    if builder is None:
        known = ", ".join(("voc",) + tuple(BUILDERS))
        raise ValueError(f"no TFDS builder for dataset {dataset!r}; known: {known}")
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None
    )
    dataset = tfds.load(
        builder.name,
        split=split,
        data_dir=data_dir,
        decoders={"image": tfds.decode.SkipDecoding(), "label": tfds.decode.SkipDecoding()},
        download_and_prepare_kwargs={"download_config": download_config},
    )
    return examples_dataset(dataset, input_context=input_context)
