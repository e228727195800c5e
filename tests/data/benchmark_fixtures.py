"""Writers of tiny Cityscapes, PASCAL Context and COCO-Stuff folders in their shipped formats.

File names, folders, bit depths and stored ids are those of the releases (and
of mmsegmentation's converted layouts); pixel values are drawn so that a
single image covers many stored ids. Each writer returns {image id: stored
label array} so tests can compare what the readers give against a reference.
"""

import json
import os

import numpy as np
import scipy.io
from PIL import Image

from tests.data.conftest import write_jpeg

# Every stored Cityscapes value: the 34 ids and 255 (the licence plate's -1 as a byte).
CITYSCAPES_STORED = tuple(range(34)) + (255,)


def _blocks(rng, values, height, width, block=4):
    """(height, width) uint8 of `block`-sized squares, every value of `values` at least once."""
    cells = (height // block) * (width // block)
    assert cells >= len(values), "fixture too small to hold every value"
    drawn = np.concatenate(
        [np.asarray(values), rng.choice(np.asarray(values), cells - len(values))]
    )
    rng.shuffle(drawn)
    grid = drawn.reshape(height // block, width // block).astype(np.uint8)
    return np.kron(grid, np.ones((block, block), np.uint8))


def _save(array, path, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path, format="PNG")


def write_cityscapes(root, splits, *, size=(32, 64), seed=0):
    """`root/leftImg8bit` and `root/gtFine` with `splits` = {split: {city: count}}.

    Images are 8-bit RGB PNGs; labelIds 8-bit grayscale PNGs holding every
    stored id; beside them, as shipped, `_gtFine_color.png`,
    `_gtFine_instanceIds.png` (16-bit) and `_gtFine_polygons.json`, which
    the reader must leave alone.
    """
    rng = np.random.default_rng(seed)
    labels = {}
    for split, cities in splits.items():
        for city, count in cities.items():
            for frame in range(count):
                stem = f"{city}_000000_{frame:06d}"
                image = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
                images = os.path.join(root, "leftImg8bit", split, city)
                _save(image, os.path.join(images, f"{stem}_leftImg8bit.png"))
                label = _blocks(rng, CITYSCAPES_STORED, *size)
                gt = os.path.join(root, "gtFine", split, city, stem)
                _save(label, f"{gt}_gtFine_labelIds.png")
                _save(np.stack([label] * 3, -1), f"{gt}_gtFine_color.png")
                Image.fromarray(label.astype(np.uint16) * 1000).save(f"{gt}_gtFine_instanceIds.png")
                with open(f"{gt}_gtFine_polygons.json", "w") as handle:
                    json.dump({"imgHeight": size[0], "imgWidth": size[1], "objects": []}, handle)
                labels[stem] = label
    return labels


def write_pascal_context(root, splits, *, size=(40, 48), seed=0):
    """`root/VOC2010` as mmsegmentation's converter leaves it: stored ids 0 (background)..59."""
    rng = np.random.default_rng(seed)
    voc2010 = os.path.join(root, "VOC2010")
    lists = os.path.join(voc2010, "ImageSets", "SegmentationContext")
    os.makedirs(lists, exist_ok=True)
    labels = {}
    for split, ids in splits.items():
        for image_id in ids:
            image = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
            write_jpeg(os.path.join(voc2010, "JPEGImages", f"{image_id}.jpg"), image)
            labels[image_id] = _blocks(rng, range(60), *size)
            label_path = os.path.join(voc2010, "SegmentationClassContext", f"{image_id}.png")
            _save(labels[image_id], label_path)
        with open(os.path.join(lists, f"{split}.txt"), "w") as handle:
            handle.write("".join(f"{i}\n" for i in ids))
    return labels


# mmsegmentation's COCO-Stuff-164k table (clsID_to_trID), typed from its release rather than
# taken from ema_keras: the stored ids 0..181 in training-id order; the 11 thing ids COCO
# never annotated (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90), 182.. and 255 are ignored.
MMSEG_COCO_164K_STORED_IDS = (
    *range(0, 11), *range(12, 25), 26, 27, *range(30, 44), *range(45, 65), 66, 69,
    *range(71, 82), *range(83, 90), *range(91, 182),
)  # fmt: skip
MMSEG_COCO_164K_TABLE = np.full(256, 255, np.uint8)
MMSEG_COCO_164K_TABLE[list(MMSEG_COCO_164K_STORED_IDS)] = np.arange(171)


def write_coco_stuff_164k(root, splits, *, size=(40, 48), seed=0, train_ids=False):
    """`root/images/<split>/*.jpg` and `root/annotations/<split>/*.png` (stuffthingmaps: 0..181
    and 255); with `train_ids`, also mmsegmentation's `*_labelTrainIds.png` beside them,
    converted with its own table (`MMSEG_COCO_164K_TABLE`)."""
    rng = np.random.default_rng(seed)
    labels = {}
    for split, count in splits.items():
        for index in range(count):
            image_id = f"{index + 1:012d}"
            image = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
            write_jpeg(os.path.join(root, "images", split, f"{image_id}.jpg"), image)
            label = _blocks(rng, tuple(range(182)) + (255,), *size, block=2)
            labels[image_id] = label
            annotations = os.path.join(root, "annotations", split)
            _save(label, os.path.join(annotations, f"{image_id}.png"))
            if train_ids:
                mapped = MMSEG_COCO_164K_TABLE[label]
                _save(mapped, os.path.join(annotations, f"{image_id}_labelTrainIds.png"))
    return labels


def write_coco_stuff_10k(root, splits, *, size=(40, 48), seed=0):
    """cocostuff-10k-v1.1: images/*.jpg, annotations/*.mat (uint16 'S', 1-based, 0 unlabeled),
    imageLists/<split>.txt."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "imageLists"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    labels = {}
    for split, count in splits.items():
        ids = [f"COCO_{split}2014_{index + 1:012d}" for index in range(count)]
        for image_id in ids:
            image = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
            write_jpeg(os.path.join(root, "images", f"{image_id}.jpg"), image)
            labels[image_id] = _blocks(rng, range(183), *size, block=2)
            scipy.io.savemat(
                os.path.join(root, "annotations", f"{image_id}.mat"),
                {"S": labels[image_id].astype(np.uint16)},
            )
        with open(os.path.join(root, "imageLists", f"{split}.txt"), "w") as handle:
            handle.write("".join(f"{i}\n" for i in ids))
    return labels
