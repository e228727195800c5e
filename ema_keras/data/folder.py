"""A dataset of one's own as a folder: `images/`, `masks/`, `classes.txt` (`--dataset folder`).

    mydata/
      classes.txt            one class per line, the line number is the id (see class_table)
      images/a.jpg           any subfolders; JPEG, PNG, WebP, TIFF, BMP
      images/day2/b.png
      masks/a.png            the same relative path and stem, always PNG
      masks/day2/b.png
      splits/train.txt       optional: relative paths without extension, one per line
      splits/val.txt

Images and masks pair by relative path without extension. An image without a
mask is left out (listed, never trained on); a mask without an image is
listed too. Masks are read by the class table: 8-bit index PNGs (palette or
grayscale: the index is the id, 255 = ignore), RGB colour masks when
classes.txt gives colours, or values declared with `=N` (0/255 binary masks).
Refused, naming the file: JPEG masks (lossy: their values are not the ones
drawn), 16-bit masks, colour masks without colours in classes.txt, values or
colours in no line, a mask of another size than its image (`converted_masks`
compares them).
"""

import os

import numpy as np
from PIL import Image

from ema_keras.data.annotations import AnnotatedDataset, AnnotatedImage
from ema_keras.data.class_table import read_class_table
from ema_keras.data.errors import (
    CorruptFileError,
    DataError,
    MissingFileError,
    UnsupportedModeError,
)
from ema_keras.data.file_formats import (
    PNG_BIT_DEPTH_OFFSET,
    PNG_COLOR_TYPE_OFFSET,
    PNG_GRAYSCALE,
    PNG_SIGNATURE,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
MASK_SUFFIX = ".png"
LOSSY_MASK_SUFFIXES = (".jpg", ".jpeg", ".webp")
CLASSES_FILE = "classes.txt"
SPLITS_FOLDER = "splits"
CONVERTER = "folder-1"


def _files_by_id(folder, suffixes):
    """{relative path without extension: path} of the files with `suffixes`; refuses twins."""
    found, twins = {}, []
    for parent, folders, names in os.walk(folder):
        folders.sort()
        for name in sorted(names):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() not in suffixes or name.startswith("."):
                continue
            path = os.path.join(parent, name)
            image_id = os.path.relpath(os.path.join(parent, stem), folder).replace(os.sep, "/")
            if image_id in found:
                twins.append((found[image_id], path))
            found[image_id] = path
    if twins:
        first, second = twins[0]
        raise DataError(
            second,
            f"{first} has the same name without extension; one file per id "
            f"({len(twins)} such pair(s))",
        )
    return found


def read_split_file(path, known_ids):
    """The ids a split file lists (relative paths without extension), each known."""
    with open(path, encoding="utf-8-sig") as handle:
        ids = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    ids = [os.path.splitext(i)[0] if i.lower().endswith(IMAGE_SUFFIXES) else i for i in ids]
    unknown = [i for i in ids if i not in known_ids]
    if unknown:
        raise MissingFileError(
            path,
            f"lists {len(unknown)} id(s) with no image and mask pair, e.g. {unknown[0]!r} "
            "(ids are paths under images/ without extension)",
        )
    if not ids:
        raise DataError(path, "lists no image")
    return tuple(ids)


def read_mask_ids(path, table):
    """(H, W) uint8 training ids of a mask file as `table` reads it (module docstring)."""
    if not os.path.isfile(path):
        raise MissingFileError(path, "mask file does not exist")
    try:
        mask = Image.open(path)
        mask.load()
    except (OSError, SyntaxError, ValueError) as error:
        message = " ".join(str(error).split())
        raise CorruptFileError(path, f"cannot decode the mask ({message})") from None
    mode = mask.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(mask)
        raise UnsupportedModeError(
            path,
            f"is a {'16-bit' if mode.startswith('I') else 'float'} mask (values up to "
            f"{values.max()}); save it as an 8-bit PNG of class ids",
        )
    if table.colour_masks:
        if mode in ("L", "1"):
            raise UnsupportedModeError(
                path, "is a grayscale mask, but classes.txt gives colours r,g,b: the colours "
                "must be the mask's, or give no colours for index masks"
            )
        rgba = np.asarray(mask.convert("RGBA"))
        if (rgba[..., 3] != 255).any():
            raise UnsupportedModeError(path, "colour mask with transparent pixels; save it as RGB")
        return table.ids_of_mask(rgba[..., :3], path)
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(mask.convert("RGB"))
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise UnsupportedModeError(
                path,
                "is an RGB colour mask, but classes.txt gives no colours: end each line with "
                "the class's colour r,g,b",
            )
        values = rgb[..., 0]
    elif mode in ("P", "L", "1"):
        values = np.asarray(mask).astype(np.uint8)
    else:
        raise UnsupportedModeError(path, f"mask mode {mode!r} is not an index or colour mask")
    return table.ids_of_mask(values, path)


def _is_plain_id_png(path):
    """An 8-bit single-channel PNG, which the tf.data decoder reads as ids as it is."""
    with open(path, "rb") as handle:
        header = handle.read(32)
    return (
        header.startswith(PNG_SIGNATURE)
        and len(header) > PNG_COLOR_TYPE_OFFSET
        and header[PNG_BIT_DEPTH_OFFSET] == 8
        and header[PNG_COLOR_TYPE_OFFSET] == PNG_GRAYSCALE
    )


def read_folder(root):
    """The folder dataset at `root` as an AnnotatedDataset (see the module docstring)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise MissingFileError(root, "no such folder; --dataset folder takes a folder holding "
                               "images/, masks/ and classes.txt")
    for name in ("images", "masks"):
        if not os.path.isdir(os.path.join(root, name)):
            raise MissingFileError(
                os.path.join(root, name),
                "no such folder; --dataset folder takes a folder holding images/, masks/ and "
                "classes.txt",
            )
    classes_path = os.path.join(root, CLASSES_FILE)
    table = read_class_table(classes_path)
    images = _files_by_id(os.path.join(root, "images"), IMAGE_SUFFIXES)
    masks = _files_by_id(os.path.join(root, "masks"), (MASK_SUFFIX,) + LOSSY_MASK_SUFFIXES)
    lossy = [path for path in masks.values() if path.lower().endswith(LOSSY_MASK_SUFFIXES)]
    if lossy:
        raise UnsupportedModeError(
            lossy[0],
            f"masks must be PNG: a lossy format changes the values drawn ({len(lossy)} such "
            "mask(s))",
        )
    left_out = [(images[i], "no mask in masks/") for i in images if i not in masks]
    left_out += [(masks[i], "mask without an image in images/") for i in masks if i not in images]
    paired = sorted(set(images) & set(masks))
    if not paired:
        raise MissingFileError(
            os.path.join(root, "masks"),
            f"no mask pairs with an image of {os.path.join(root, 'images')} (same relative path "
            "and name, mask as .png)",
        )

    def render_mask(mask_path):
        return lambda size: read_mask_ids(mask_path, table)

    annotated = []
    for image_id in paired:
        mask = masks[image_id]
        if not table.needs_conversion and _is_plain_id_png(mask):
            item = AnnotatedImage(image_id, images[image_id], (mask,), mask_path=mask)
        else:
            item = AnnotatedImage(
                image_id, images[image_id], (mask, classes_path),
                render=render_mask(mask), converter=CONVERTER,
            )
        annotated.append(item)
    splits = {}
    splits_dir = os.path.join(root, SPLITS_FOLDER)
    if os.path.isdir(splits_dir):
        for name in sorted(os.listdir(splits_dir)):
            if name.endswith(".txt"):
                path = os.path.join(splits_dir, name)
                splits[name[: -len(".txt")]] = read_split_file(path, set(paired))
    return AnnotatedDataset(
        kind="folder",
        root=root,
        class_table=table,
        images=tuple(annotated),
        splits=splits,
        left_out=tuple(left_out),
        classes_from=classes_path,
    )
