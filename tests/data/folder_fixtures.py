"""Small learnable folder datasets (`--dataset folder`) written in the formats users have.

Each image: a noisy gray background with one or two solid shapes; class 1 is a
reddish rectangle, class 2 a bluish ellipse (3 classes with background). The
mask is written as the test asks: index PNG, RGB colour mask, or 0/255 binary.
"""

import os

import numpy as np
from PIL import Image

CLASS_NAMES = ("background", "scratch", "dent")
CLASS_COLOURS = ((0, 0, 0), (220, 40, 40), (40, 80, 220))
PIXEL_COLOURS = {1: (200, 60, 50), 2: (50, 90, 210)}


def draw_example(rng, size, binary=False):
    """(image (H, W, 3) uint8, ids (H, W) uint8) of one learnable example."""
    height, width = size
    image = rng.normal(128, 12, (height, width, 3)).clip(0, 255)
    ids = np.zeros((height, width), np.uint8)
    ys, xs = np.mgrid[:height, :width]
    classes = [1] if binary else rng.choice([1, 2], size=int(rng.integers(1, 3)), replace=False)
    for class_id in classes:
        cy = rng.integers(height // 4, 3 * height // 4)
        cx = rng.integers(width // 4, 3 * width // 4)
        hh, hw = rng.integers(height // 8, height // 4), rng.integers(width // 8, width // 4)
        if class_id == 1:
            region = (np.abs(ys - cy) <= hh) & (np.abs(xs - cx) <= hw)
        else:
            region = ((ys - cy) / hh) ** 2 + ((xs - cx) / hw) ** 2 <= 1
        ids[region] = class_id
        image[region] = np.asarray(PIXEL_COLOURS[class_id]) + rng.normal(0, 8, (region.sum(), 3))
    return image.clip(0, 255).astype(np.uint8), ids


def write_folder_dataset(
    root, *, num_images=12, size=(48, 64), masks="index", classes_txt=None, splits=None,
    nested=True, seed=0,
):
    """Writes root/images, root/masks, root/classes.txt; returns {image_id: ids}.

    masks: "index" (8-bit grayscale PNG of ids), "palette" (palette PNG, own colours),
    "colour" (RGB PNG in CLASS_COLOURS; classes.txt gives them), "binary255"
    (two classes, foreground stored as 255). classes_txt overrides the written
    classes.txt text. splits: {name: [ids]} written to root/splits/<name>.txt.
    """
    rng = np.random.default_rng(seed)
    written = {}
    for index in range(num_images):
        folder = f"part{index % 2}/" if nested else ""
        image_id = f"{folder}img{index:03d}"
        image, ids = draw_example(rng, size, binary=masks == "binary255")
        for kind in ("images", "masks"):
            os.makedirs(os.path.dirname(os.path.join(root, kind, image_id)), exist_ok=True)
        Image.fromarray(image).save(os.path.join(root, "images", image_id + ".jpg"), quality=95)
        mask_path = os.path.join(root, "masks", image_id + ".png")
        if masks == "index":
            Image.fromarray(ids).save(mask_path)
        elif masks == "palette":
            mask = Image.fromarray(ids, mode="P")
            mask.putpalette([c for colour in CLASS_COLOURS for c in colour])
            mask.save(mask_path)
        elif masks == "colour":
            Image.fromarray(np.asarray(CLASS_COLOURS, np.uint8)[ids]).save(mask_path)
        elif masks == "binary255":
            Image.fromarray((ids > 0).astype(np.uint8) * 255).save(mask_path)
        else:
            raise ValueError(masks)
        written[image_id] = ids
    if classes_txt is None:
        if masks == "colour":
            classes_txt = "".join(
                f"{name} {','.join(map(str, colour))}\n"
                for name, colour in zip(CLASS_NAMES, CLASS_COLOURS)
            )
        elif masks == "binary255":
            classes_txt = "background\nscratch =255\n"
        else:
            classes_txt = "\n".join(CLASS_NAMES) + "\n"
    with open(os.path.join(root, "classes.txt"), "w") as handle:
        handle.write(classes_txt)
    for name, ids in (splits or {}).items():
        os.makedirs(os.path.join(root, "splits"), exist_ok=True)
        with open(os.path.join(root, "splits", f"{name}.txt"), "w") as handle:
            handle.write("\n".join(ids) + "\n")
    return written
