"""Cityscapes (fine annotations) as it ships: leftImg8bit/ and gtFine/ folders.

    <root>/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

The labelIds PNGs hold the 34 ids of the cityscapesScripts table (8-bit
grayscale); training uses its 19 train ids and ignores every other id, the
licence plate (-1) included. `LABELS` below is that table (name, id, train
id, colour) as published in cityscapesScripts' `helpers/labels.py`; the
label map and the palette are read from it. Images are 1024x2048 RGB PNGs.
2,975 train / 500 val / 1,525 test (test labels are all void).
"""

import os
from typing import NamedTuple, Tuple

from ema_keras.data.dataset_spec import (
    Dataset,
    Example,
    checked_examples,
    label_map_from_pairs,
    paired_files,
)
from ema_keras.data.errors import MissingFileError
from ema_keras.data.voc import IGNORE_LABEL

IMAGE_FOLDER, LABEL_FOLDER = "leftImg8bit", "gtFine"
IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
SPLITS = ("train", "val", "test")
URL = "https://www.cityscapes-dataset.com/downloads/"


class Label(NamedTuple):
    name: str
    id: int
    train_id: int  # 255 (or -1): ignored in training and evaluation
    color: Tuple[int, int, int]


LABELS = (
    Label("unlabeled", 0, 255, (0, 0, 0)),
    Label("ego vehicle", 1, 255, (0, 0, 0)),
    Label("rectification border", 2, 255, (0, 0, 0)),
    Label("out of roi", 3, 255, (0, 0, 0)),
    Label("static", 4, 255, (0, 0, 0)),
    Label("dynamic", 5, 255, (111, 74, 0)),
    Label("ground", 6, 255, (81, 0, 81)),
    Label("road", 7, 0, (128, 64, 128)),
    Label("sidewalk", 8, 1, (244, 35, 232)),
    Label("parking", 9, 255, (250, 170, 160)),
    Label("rail track", 10, 255, (230, 150, 140)),
    Label("building", 11, 2, (70, 70, 70)),
    Label("wall", 12, 3, (102, 102, 156)),
    Label("fence", 13, 4, (190, 153, 153)),
    Label("guard rail", 14, 255, (180, 165, 180)),
    Label("bridge", 15, 255, (150, 100, 100)),
    Label("tunnel", 16, 255, (150, 120, 90)),
    Label("pole", 17, 5, (153, 153, 153)),
    Label("polegroup", 18, 255, (153, 153, 153)),
    Label("traffic light", 19, 6, (250, 170, 30)),
    Label("traffic sign", 20, 7, (220, 220, 0)),
    Label("vegetation", 21, 8, (107, 142, 35)),
    Label("terrain", 22, 9, (152, 251, 152)),
    Label("sky", 23, 10, (70, 130, 180)),
    Label("person", 24, 11, (220, 20, 60)),
    Label("rider", 25, 12, (255, 0, 0)),
    Label("car", 26, 13, (0, 0, 142)),
    Label("truck", 27, 14, (0, 0, 70)),
    Label("bus", 28, 15, (0, 60, 100)),
    Label("caravan", 29, 255, (0, 0, 90)),
    Label("trailer", 30, 255, (0, 0, 110)),
    Label("train", 31, 16, (0, 80, 100)),
    Label("motorcycle", 32, 17, (0, 0, 230)),
    Label("bicycle", 33, 18, (119, 11, 32)),
    Label("license plate", -1, -1, (0, 0, 142)),
)
TRAIN_LABELS = tuple(sorted((l for l in LABELS if 0 <= l.train_id < 255), key=lambda l: l.train_id))
CLASSES = tuple(label.name for label in TRAIN_LABELS)
PALETTE = tuple(label.color for label in TRAIN_LABELS)
LABEL_MAP = label_map_from_pairs(((l.id, l.train_id) for l in LABELS), IGNORE_LABEL)


def find_cityscapes_root(path):
    """`path` itself when it holds leftImg8bit/ and gtFine/, else its cityscapes/ folder."""
    path = os.fspath(path)
    for candidate in (path, os.path.join(path, "cityscapes")):
        if all(os.path.isdir(os.path.join(candidate, f)) for f in (IMAGE_FOLDER, LABEL_FOLDER)):
            return candidate
    raise MissingFileError(
        path, f"no Cityscapes folder here (expected {IMAGE_FOLDER}/ and {LABEL_FOLDER}/ in it)"
    )


def read_split(root, split, *, check_files=True, **unused):
    """The examples of a split ('train', 'val', 'test'), every image paired with its labelIds."""
    root = find_cityscapes_root(root)
    image_dir = os.path.join(root, IMAGE_FOLDER, split)
    pairs = paired_files(
        image_dir, IMAGE_SUFFIX, os.path.join(root, LABEL_FOLDER, split), LABEL_SUFFIX
    )
    examples = [Example(i, image, label, LABEL_MAP) for i, image, label in pairs]
    return checked_examples(image_dir, examples, check_files)


DATASET = Dataset(
    name="cityscapes",
    description="Cityscapes gtFine: 19 classes of urban street scenes, 1024x2048",
    class_names=CLASSES,
    palette=PALETTE,
    find_root=find_cityscapes_root,
    read_split=read_split,
    splits=("train", "val"),
    label_map=LABEL_MAP,
    folder="cityscapes",
    eval_window=769,  # 1024x2048 images by 769x769 windows, as the anchors evaluate
    where_to_get=f"leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from {URL}",
)
