"""A tensorflow-datasets builder for VOC 2012 segmentation from a manual directory.

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
"""

import inspect
import os

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

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
            yield example.image_id, {
                "image_id": example.image_id,
                "image": example.image_path,
                "label": load_label(example.label_path)[..., None],
            }


def load_voc_segmentation(split, *, data_dir=None, manual_dir=None, input_context=None):
    """`tfds.load` of this builder (prepared from `manual_dir` if needed), decoded like our reader.

    Returns a dataset of dicts of image_id, image (H, W, 3) uint8 and label
    (H, W) uint8, the same examples as `examples_dataset(read_voc_split(...))`
    (in TFDS's file order).
    """
    from ema_keras.data.decode import examples_dataset

    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None
    )
    dataset = tfds.load(
        VocSegmentation.name,
        split=split,
        data_dir=data_dir,
        decoders={"image": tfds.decode.SkipDecoding(), "label": tfds.decode.SkipDecoding()},
        download_and_prepare_kwargs={"download_config": download_config},
    )
    return examples_dataset(dataset, input_context=input_context)
