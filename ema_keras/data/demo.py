"""A small VOC-format dataset that the project draws itself, deterministically.

Real VOC cannot be downloaded everywhere (CI, air-gapped machines), yet the
README's main command and the tests need a dataset in the real formats whose
masks can be learnt in minutes on a CPU. This one has the VOCdevkit layout
(JPEGs, VOC palette PNGs, ImageSets/Segmentation/*.txt), images of varying
sizes, and one to three objects of five VOC classes per image, each class a
shape with its own colour and texture on a noisy, low-saturation background.
Object outlines carry the 255 ignore label, a few pixels wide, as in VOC.
"""

import json
import os

import numpy as np
from PIL import Image
from scipy import ndimage

from ema_keras.data.image_io import save_palette_png
from ema_keras.data.voc import IGNORE_LABEL, VOC_CLASSES

_FORMAT_VERSION = 2  # bump whenever the drawing changes: old folders get redrawn
_MANIFEST = "demo_manifest.json"
# (min, max) side of the demo images: the trainer checks --eval_pad_size against it
# before it generates the set.
DEMO_IMAGE_SIZE = (96, 128)

# class id -> (shape, RGB base colour, texture). The colours sit far from the
# low-saturation background; bus and cat share one on purpose, so that telling
# them apart takes texture and shape (context), not the pixel's colour alone.
DEMO_OBJECTS = {
    1: ("triangle", (70, 140, 235), "horizontal_stripes"),  # aeroplane
    6: ("rectangle", (235, 190, 40), "plain"),  # bus
    8: ("ellipse", (235, 190, 40), "checker"),  # cat
    15: ("person", (200, 40, 70), "plain"),  # person
    16: ("diamond", (40, 170, 60), "vertical_stripes"),  # pottedplant
}
DEMO_CLASS_IDS = tuple(sorted(DEMO_OBJECTS))
DEMO_CLASS_NAMES = tuple(VOC_CLASSES[i] for i in DEMO_CLASS_IDS)


def _shape_mask(shape, ys, xs, center_y, center_x, half_height, half_width):
    dy = (ys - center_y) / half_height
    dx = (xs - center_x) / half_width
    if shape == "rectangle":
        return (np.abs(dy) <= 1) & (np.abs(dx) <= 1)
    if shape == "ellipse":
        return dy**2 + dx**2 <= 1
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= 1
    if shape == "triangle":  # apex up
        return (dy <= 1) & (np.abs(dx) <= (dy + 1) / 2)
    if shape == "person":  # a head on a body
        head = (dy + 0.7) ** 2 / 0.09 + dx**2 / 0.16 <= 1
        body = (dy >= -0.35) & (dy <= 1) & (np.abs(dx) <= 0.55)
        return head | body
    raise ValueError(f"unknown demo shape {shape!r}")


def _texture(kind, ys, xs, period):
    if kind == "horizontal_stripes":
        return np.where((ys // period) % 2 == 0, 1.0, 0.55)
    if kind == "vertical_stripes":
        return np.where((xs // period) % 2 == 0, 1.0, 0.55)
    if kind == "checker":
        return np.where(((ys // period) + (xs // period)) % 2 == 0, 1.0, 0.6)
    return np.ones_like(ys, dtype=np.float64)


def draw_demo_example(rng, height, width):
    """One (image uint8 (H, W, 3), label uint8 (H, W)) pair drawn from `rng`."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    # Background: a low-saturation gradient plus noise.
    corners = rng.uniform(60, 170, size=(2, 3))
    ramp = (ys / height)[..., None]
    image = corners[0] * (1 - ramp) + corners[1] * ramp
    image = 0.7 * image + 0.3 * image.mean(axis=-1, keepdims=True)
    label = np.zeros((height, width), dtype=np.uint8)
    outline = np.zeros((height, width), dtype=bool)

    for _ in range(rng.integers(1, 4)):
        class_id = int(rng.choice(DEMO_CLASS_IDS))
        shape, color, texture = DEMO_OBJECTS[class_id]
        half_height = rng.uniform(0.15, 0.3) * height
        half_width = rng.uniform(0.15, 0.3) * width
        center_y = rng.uniform(half_height * 0.5, height - half_height * 0.5)
        center_x = rng.uniform(half_width * 0.5, width - half_width * 0.5)
        mask = _shape_mask(shape, ys, xs, center_y, center_x, half_height, half_width)
        if mask.sum() < 20:
            continue
        shade = np.asarray(color) + rng.uniform(-20, 20, size=3)
        pattern = _texture(texture, ys, xs, period=int(rng.integers(3, 6)))
        image[mask] = (shade * pattern[..., None])[mask]
        label[mask] = class_id
        outline |= mask & ~ndimage.binary_erosion(mask, iterations=1)
        outline |= ndimage.binary_dilation(mask, iterations=1) & ~mask

    image += rng.normal(0, 8, size=image.shape)
    label[outline] = IGNORE_LABEL
    return np.clip(np.round(image), 0, 255).astype(np.uint8), label


def _manifest(num_train, num_val, image_size, seed):
    return {
        "format_version": _FORMAT_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "image_size": list(image_size),
        "seed": seed,
    }


def _ids(num_train, num_val):
    train = [f"demo_{i:05d}" for i in range(num_train)]
    val = [f"demo_{i:05d}" for i in range(num_train, num_train + num_val)]
    return train, val


def write_demo_dataset(root, num_train=200, num_val=50, image_size=DEMO_IMAGE_SIZE, seed=0):
    """Writes the demo set under `root` and returns its VOC2012 folder.

    `image_size` is an int (square images) or (min, max): each side is drawn
    from [min, max]. Re-running with the same arguments on a complete folder
    only checks the files; with other arguments it rewrites the folder.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train}, {num_val}")
    size_range = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size_range) != 2 or not 16 <= size_range[0] <= size_range[1]:
        raise ValueError(f"image_size must be an int >= 16 or (min, max), got {image_size}")
    voc_root = os.path.join(os.fspath(root), "VOC2012")
    manifest = _manifest(num_train, num_val, size_range, seed)
    train_ids, val_ids = _ids(num_train, num_val)
    manifest_path = os.path.join(voc_root, _MANIFEST)
    if _is_complete(voc_root, manifest_path, manifest, train_ids + val_ids):
        return voc_root

    for folder in ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation")):
        os.makedirs(os.path.join(voc_root, folder), exist_ok=True)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    rng = np.random.default_rng(seed)
    for image_id in train_ids + val_ids:
        height, width = rng.integers(size_range[0], size_range[1] + 1, size=2)
        image, label = draw_demo_example(rng, int(height), int(width))
        Image.fromarray(image).save(
            os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg"), quality=92
        )
        save_palette_png(label, os.path.join(voc_root, "SegmentationClass", f"{image_id}.png"))
    for split, ids in (("train", train_ids), ("val", val_ids), ("trainval", train_ids + val_ids)):
        with open(
            os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt"), "w"
        ) as handle:
            handle.write("".join(f"{i}\n" for i in ids))
    with open(manifest_path, "w") as handle:  # written last: marks the folder complete
        json.dump(manifest, handle, indent=1)
    return voc_root


def _is_complete(voc_root, manifest_path, manifest, ids):
    try:
        with open(manifest_path) as handle:
            if json.load(handle) != manifest:
                return False
    except (OSError, ValueError):
        return False
    return all(
        os.path.isfile(os.path.join(voc_root, "JPEGImages", f"{i}.jpg"))
        and os.path.isfile(os.path.join(voc_root, "SegmentationClass", f"{i}.png"))
        for i in ids
    )
