"""PASCAL VOC 2012 and SBD on disk: class names, colour map, split readers.

Readers return lists of `VOCExample(image_id, image_path, label_path)`; they
check that every named file exists but decode nothing (decoding happens in the
tf.data graph, see `ema_keras.data.decode`, or in `ema_keras.data.image_io` for
numpy users). Three label sources are understood:

- VOCdevkit: `VOC2012/SegmentationClass/<id>.png`, palette PNGs whose palette
  index is the class id (255 marks object borders and is ignored);
- SBD: `benchmark_RELEASE/dataset/cls/<id>.mat`, MATLAB files holding
  `GTcls.Segmentation`, images in `dataset/img/<id>.jpg`;
- `SegmentationClassAug/<id>.png`: SBD and VOC labels already converted to
  single-channel PNGs of class ids (the form most users hold SBD in).

"trainaug" is VOC train + SBD train + SBD val, minus VOC val (10,582 ids on the
real data).
"""

import os

import numpy as np

from ema_keras.data.dataset_spec import Dataset, Example, checked_examples
from ema_keras.data.errors import EmptySplitError, MissingFileError

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
NUM_CLASSES = len(VOC_CLASSES)
IGNORE_LABEL = 255


# VOC's examples are the general ones, their labels holding class ids already.
VOCExample = Example


def voc_colormap():
    """The VOC palette, (256, 3) uint8: entry i is the colour of class id i.

    The three low bits of the id feed the top bits of red, green and blue, the
    next three bits the next ones, and so on; so every id has its own colour
    and the map can be inverted exactly (255, the border, is light beige).
    """
    ids = np.arange(256)
    colormap = np.zeros((256, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            colormap[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return colormap.astype(np.uint8)


def find_voc_root(path):
    """`path` itself when it holds ImageSets/, else its VOC2012/ or VOCdevkit/VOC2012/."""
    path = os.fspath(path)
    for candidate in (
        path,
        os.path.join(path, "VOC2012"),
        os.path.join(path, "VOCdevkit", "VOC2012"),
    ):
        if os.path.isdir(os.path.join(candidate, "ImageSets")):
            return candidate
    raise MissingFileError(
        path, "no VOC folder here (expected ImageSets/ in it, or in VOC2012/ below it)"
    )


def find_sbd_root(path):
    """The SBD `dataset/` folder from itself, `benchmark_RELEASE/` or the folder above."""
    path = os.fspath(path)
    for candidate in (
        path,
        os.path.join(path, "dataset"),
        os.path.join(path, "benchmark_RELEASE", "dataset"),
    ):
        if os.path.isdir(os.path.join(candidate, "cls")):
            return candidate
    raise MissingFileError(
        path, "no SBD folder here (expected cls/ in it, or in dataset/ below it)"
    )


def read_id_list(list_path):
    """Image ids listed one per line; lines may also be `img/path.jpg label/path.png`."""
    list_path = os.fspath(list_path)
    if not os.path.isfile(list_path):
        raise MissingFileError(list_path, "split file does not exist")
    with open(list_path, encoding="utf-8") as handle:
        tokens = [line.split()[0] for line in handle if line.strip()]
    if not tokens:
        raise EmptySplitError(list_path, "split file names no image")
    return [os.path.splitext(os.path.basename(token))[0] for token in tokens]


def _checked_examples(list_path, ids, image_path_of, label_path_of, check_files=True):
    examples = [VOCExample(i, image_path_of(i), label_path_of(i)) for i in ids]
    return checked_examples(list_path, examples, check_files)


def read_voc_split(voc_root, split, *, check_files=True):
    """The examples of a VOCdevkit split ('train', 'val', 'trainval' or any list file name).

    Raises MissingFileError naming the split file when a listed image or
    label is missing (unless `check_files=False`), EmptySplitError when the
    split names nothing.
    """
    voc_root = find_voc_root(voc_root)
    list_path = os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt")
    return _checked_examples(
        list_path,
        read_id_list(list_path),
        lambda i: os.path.join(voc_root, "JPEGImages", f"{i}.jpg"),
        lambda i: os.path.join(voc_root, "SegmentationClass", f"{i}.png"),
        check_files,
    )


def read_sbd_split(sbd_root, split, *, check_files=True):
    """The examples of an SBD split ('train' or 'val'): images in img/, labels as cls/*.mat."""
    sbd_root = find_sbd_root(sbd_root)
    list_path = os.path.join(sbd_root, f"{split}.txt")
    return _checked_examples(
        list_path,
        read_id_list(list_path),
        lambda i: os.path.join(sbd_root, "img", f"{i}.jpg"),
        lambda i: os.path.join(sbd_root, "cls", f"{i}.mat"),
        check_files,
    )


def read_aug_split(voc_root, list_path, aug_dir=None, *, check_files=True):
    """Examples named by `list_path` with labels from SegmentationClassAug/ PNGs.

    `aug_dir` defaults to `<voc_root>/SegmentationClassAug`; images come from the
    VOC JPEGImages/ folder (SBD's images are a subset of VOC 2012's).
    """
    voc_root = find_voc_root(voc_root)
    aug_dir = os.fspath(aug_dir) if aug_dir else os.path.join(voc_root, "SegmentationClassAug")
    return _checked_examples(
        os.fspath(list_path),
        read_id_list(list_path),
        lambda i: os.path.join(voc_root, "JPEGImages", f"{i}.jpg"),
        lambda i: os.path.join(aug_dir, f"{i}.png"),
        check_files,
    )


def trainaug_examples(voc_root, *, sbd_root=None, aug_dir=None, check_files=True):
    """VOC train + SBD train + SBD val, minus VOC val, sorted by id.

    Labels: VOC's own SegmentationClass PNG for ids in VOC train (finer, with
    the 255 borders), otherwise the `aug_dir` PNG when given, otherwise the SBD
    `.mat`. SBD ids come from SBD's train.txt and val.txt when `sbd_root` is
    given, else from the PNG names in `aug_dir` (which holds VOC val too; it is
    subtracted like any other VOC val id).
    """
    if sbd_root is None and aug_dir is None:
        raise ValueError(
            "trainaug needs SBD: pass sbd_root= (benchmark_RELEASE) "
            "or aug_dir= (SegmentationClassAug)"
        )
    voc_root = find_voc_root(voc_root)
    voc_train = {e.image_id: e for e in read_voc_split(voc_root, "train", check_files=check_files)}
    voc_val_ids = set(read_id_list(os.path.join(voc_root, "ImageSets", "Segmentation", "val.txt")))
    if sbd_root is not None:
        sbd_root = find_sbd_root(sbd_root)
        sbd_ids = set(read_id_list(os.path.join(sbd_root, "train.txt")))
        sbd_ids |= set(read_id_list(os.path.join(sbd_root, "val.txt")))
    else:
        if not os.path.isdir(aug_dir):
            raise MissingFileError(aug_dir, "SegmentationClassAug folder does not exist")
        sbd_ids = {
            os.path.splitext(name)[0] for name in os.listdir(aug_dir) if name.endswith(".png")
        }

    examples = []
    for image_id in sorted((set(voc_train) | sbd_ids) - voc_val_ids):
        if image_id in voc_train:
            examples.append(voc_train[image_id])
            continue
        if aug_dir is not None:
            image_path = os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg")
            label_path = os.path.join(os.fspath(aug_dir), f"{image_id}.png")
        else:
            voc_image = os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg")
            sbd_image = os.path.join(sbd_root, "img", f"{image_id}.jpg")
            image_path = voc_image if os.path.isfile(voc_image) else sbd_image
            label_path = os.path.join(sbd_root, "cls", f"{image_id}.mat")
        examples.append(VOCExample(image_id, image_path, label_path))
    missing = [p for e in examples for p in (e.image_path, e.label_path) if not os.path.isfile(p)]
    if missing and check_files:
        raise MissingFileError(
            missing[0], f"named by trainaug but missing ({len(missing)} missing in all)"
        )
    return examples


def read_split(voc_root, split, *, check_files=True, sbd_root=None, aug_dir=None):
    """A VOC split by name, "trainaug" included (it needs `sbd_root` or `aug_dir`)."""
    if split == "trainaug":
        return trainaug_examples(
            voc_root, sbd_root=sbd_root, aug_dir=aug_dir, check_files=check_files
        )
    return read_voc_split(voc_root, split, check_files=check_files)


DATASET = Dataset(
    name="voc",
    description="PASCAL VOC 2012 (+ SBD trainaug): 20 object classes and background",
    class_names=VOC_CLASSES,
    palette=tuple(tuple(int(c) for c in colour) for colour in voc_colormap()[:NUM_CLASSES]),
    ignore_colour=tuple(int(c) for c in voc_colormap()[IGNORE_LABEL]),
    full_colormap=voc_colormap,
    find_root=find_voc_root,
    read_split=read_split,
    splits=("train", "val"),
    folder="VOCdevkit",
    where_to_get="VOCdevkit from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (+ SBD)",
)
