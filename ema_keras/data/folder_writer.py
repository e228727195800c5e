"""Examples held in memory written as a folder dataset (`--dataset folder`, see `folder`).

    write_folder_dataset([(image, mask), ...], "mydata", ["background", "cat", "dog"])
    write_folder_dataset({"train": train_pairs, "val": val_pairs}, "mydata", names)

An example is `(image, mask)` or `(image_id, image, mask)`, from a list, a
generator, a `tf.data.Dataset` or torch tensors (anything with `.numpy()` is
converted). The image is an (H, W, 3) uint8 array, a PIL image or encoded
bytes; encoded JPEGs are kept byte for byte as `images/<id>.jpg`, anything
else is written as the RGB PNG of its displayed pixels (EXIF orientation
applied). The mask is an (H, W) (or (H, W, 1)) array of class ids, a PIL
index image or encoded PNG bytes; it is written as an 8-bit PNG of the ids,
255 = ignore, so `classes.txt` holds the names only.

Given a mapping of split name -> examples, ids are `<split>/<index>` and each
split gets `splits/<split>.txt`; a single split writes no split file (runs
then draw a seeded val split). Without ids, they are the example's index.

Every example is checked before the folder appears: the mask 2-D, of the
image's size, holding whole numbers that are ids of the classes or 255, ids
unique and usable as file paths. The folder is written beside `out_dir` under
a temporary name and renamed when complete; on any error that folder is
removed and `out_dir` never exists. A non-empty `out_dir` is refused: nothing
is ever overwritten.
"""

import dataclasses
import io
import os
import re
import secrets
import shutil
from typing import Mapping, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ema_keras.data.class_table import IGNORE_NAME, ClassTableError, parse_class_lines
from ema_keras.data.converted_masks import displayed_size
from ema_keras.data.errors import (
    DataError,
    LabelValueError,
    SizeMismatchError,
    UnsupportedModeError,
)
from ema_keras.data.file_formats import JPEG_SIGNATURE, check_encoding
from ema_keras.data.folder import CLASSES_FILE, IMAGE_SUFFIXES, SPLITS_FOLDER
from ema_keras.data.image_io import encode_label_png
from ema_keras.data.voc import IGNORE_LABEL

_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_JPEG_MODES = ("RGB", "L", "CMYK")  # what the graph's JPEG decoder turns into RGB
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclasses.dataclass(frozen=True)
class WrittenDataset:
    """What `write_folder_dataset` wrote: the folder, its classes, images per split."""

    root: str
    class_names: Tuple[str, ...]
    num_images: int
    splits: Mapping[str, int]  # split name -> images; empty: no split files


def write_folder_dataset(examples, out_dir, class_names):
    """Writes `examples` as the folder dataset `out_dir` (see the module docstring).

    Returns a `WrittenDataset`. Raises a `DataError` naming the example (or
    `out_dir`, or the class) on the first problem; `out_dir` is then not created.
    """
    out_dir = os.fspath(out_dir)
    names = checked_class_names(class_names)
    parts = _as_splits(examples, out_dir)
    _check_target(out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    partial = f"{os.path.abspath(out_dir)}.partial-{os.getpid()}-{secrets.token_hex(3)}"
    os.mkdir(partial)
    try:
        counts = _write_examples(parts, partial, len(names), out_dir)
        with open(os.path.join(partial, CLASSES_FILE), "w", encoding="utf-8") as handle:
            handle.write("".join(f"{name}\n" for name in names))
        _check_target(out_dir)  # still empty, or still absent
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.rename(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    splits = counts if len(counts) > 1 else {}
    return WrittenDataset(out_dir, names, sum(counts.values()), splits)


def checked_class_names(class_names, source="class_names"):
    """The names as a tuple, each one a line that classes.txt reads back as that name."""
    names = tuple(class_names)
    if not names or len(names) > IGNORE_LABEL:
        raise ClassTableError(
            source, f"{len(names)} class names: give 1 to {IGNORE_LABEL} (255 is the ignore id)"
        )
    for class_id, name in enumerate(names):
        what = f"class {class_id} {name!r}"
        if not isinstance(name, str) or not name or name != name.strip():
            raise ClassTableError(source, f"{what}: a name is a non-empty string without "
                                  "leading or trailing spaces")
        if "#" in name or "\n" in name or "\r" in name or name == IGNORE_NAME:
            raise ClassTableError(source, f"{what}: '#' starts a comment in classes.txt, line "
                                  f"breaks end a line and {IGNORE_NAME} takes no id")
        table = parse_class_lines([name], source)
        if table.names != (name,) or table.colours or table.stored_values:
            raise ClassTableError(source, f"{what}: classes.txt would read its end as a colour "
                                  "r,g,b or a value =N; rename the class")
        if name in names[:class_id]:
            raise ClassTableError(source, f"{what}: listed twice (ids {names.index(name)} and "
                                  f"{class_id})")
    return names


def _as_splits(examples, out_dir):
    if not isinstance(examples, Mapping):
        return {None: examples}
    if not examples:
        raise DataError(out_dir, "no split to write (an empty mapping)")
    for name in examples:
        if not isinstance(name, str) or not _SPLIT_NAME.fullmatch(name):
            raise DataError(out_dir, f"split name {name!r} is not a file name (letters, digits, "
                            "'_', '-', '.')")
    return dict(examples)


def _check_target(out_dir):
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(out_dir, "exists and is not a folder; write into a new or empty folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise DataError(out_dir, f"is not empty ({len(os.listdir(out_dir))} entries); write into "
                        "a new or empty folder: nothing is overwritten")


def _write_examples(parts, root, num_classes, out_dir):
    """Writes every example under `root`; returns {split name: count} ({None: n} unsplit)."""
    seen, counts = {}, {}
    for split, part in parts.items():
        ids = []
        for index, example in enumerate(part):
            where = f"example {index}" + (f" of {split!r}" if split else "")
            image_id, image, mask = _unpack(example, where)
            if image_id is None:
                image_id = f"{split}/{index:06d}" if split else f"{index:06d}"
            else:
                image_id = _checked_id(image_id, where)
                where += f" ({image_id!r})"
            if image_id.lower() in seen:
                raise DataError(where, f"id {image_id!r} is the id of {seen[image_id.lower()]} too "
                                "(ids are file names, compared ignoring case)")
            seen[image_id.lower()] = where
            encoded, suffix, size = _image_file(image, where)
            ids_array = _mask_ids(mask, where, num_classes)
            if ids_array.shape != size:
                raise SizeMismatchError(where, f"mask is {ids_array.shape[0]}x{ids_array.shape[1]} "
                                        f"(HxW) but the image is {size[0]}x{size[1]}")
            _write(os.path.join(root, "images", image_id + suffix), encoded)
            _write(os.path.join(root, "masks", image_id + ".png"), encode_label_png(ids_array))
            ids.append(image_id)
        if not ids:
            raise DataError(out_dir, f"split {split!r} has no examples" if split else
                            "no examples to write")
        counts[split] = len(ids)
        if len(parts) > 1:
            _write(os.path.join(root, SPLITS_FOLDER, f"{split}.txt"),
                   "".join(f"{i}\n" for i in ids).encode("utf-8"))
    return counts


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def _numpy(value):
    return value.numpy() if callable(getattr(value, "numpy", None)) else value


def _unpack(example, where):
    """(image_id or None, image, mask) of one example."""
    if isinstance(example, Mapping):
        raise DataError(where, f"is a dict (keys {sorted(map(str, example))}): give (image, mask) "
                        "or (image_id, image, mask); a Hugging Face dataset goes to "
                        "write_huggingface_dataset")
    if not isinstance(example, (tuple, list)) or len(example) not in (2, 3):
        raise DataError(where, f"is of type {type(example).__name__}, not a pair (image, mask) "
                        "or a triple (image_id, image, mask)")
    values = [_numpy(value) for value in example]
    return (None, *values) if len(values) == 2 else tuple(values)


def _checked_id(image_id, where):
    if isinstance(image_id, (bytes, np.bytes_)):
        image_id = bytes(image_id).decode("utf-8")
    elif isinstance(image_id, np.ndarray) and image_id.ndim == 0:
        image_id = image_id.item()
        image_id = image_id.decode("utf-8") if isinstance(image_id, bytes) else image_id
    if not isinstance(image_id, str):
        raise DataError(where, f"image id of type {type(image_id).__name__}: the triple is "
                        "(image_id: str, image, mask)")
    stem, suffix = os.path.splitext(image_id)
    checked = stem if suffix.lower() in IMAGE_SUFFIXES else image_id
    parts = checked.split("/")
    if (
        not checked or checked != checked.strip() or checked.startswith("#")
        or any(c in checked for c in "\\\n\r\t\0:")
        or any(part in ("", ".", "..") or part.startswith(".") for part in parts)
    ):
        raise DataError(where, f"image id {image_id!r} is no relative path: ids are names or "
                        "a/b paths, without '..', hidden or empty parts, '\\', ':', line "
                        "breaks, a leading '#' or surrounding spaces")
    return checked


def _image_file(image, where):
    """(encoded bytes, suffix, (height, width) as displayed) of an example's image."""
    if isinstance(image, (bytes, bytearray, memoryview, np.bytes_)):
        data = bytes(image)
        decoded = _open(data, where, "image")
        if data.startswith(JPEG_SIGNATURE):
            check_encoding(data, where, "image", ("JPEG",))
            if decoded.mode not in _JPEG_MODES:
                raise UnsupportedModeError(where, f"JPEG image of mode {decoded.mode!r}; give RGB")
            return data, ".jpg", displayed_size(decoded)
        image = decoded
    if isinstance(image, Image.Image):
        pixels = _rgb_pixels(ImageOps.exif_transpose(image), where)
    else:
        pixels = np.asarray(image)
        if pixels.dtype.kind == "f":
            raise UnsupportedModeError(where, f"{pixels.dtype} image: no single right scale to "
                                       "8 bits; give uint8 RGB")
        pixels = _uint8(pixels, where, "image")
        if pixels.ndim != 3 or pixels.shape[-1] != 3:
            raise UnsupportedModeError(where, f"image of shape {pixels.shape}: give (H, W, 3) RGB")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue(), ".png", pixels.shape[:2]


def _open(data, where, what):
    try:
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        return decoded
    except UnidentifiedImageError:
        raise DataError(where, f"the {what}'s bytes are no image Pillow reads") from None
    except (OSError, SyntaxError, ValueError) as error:
        message = " ".join(str(error).split())
        raise DataError(where, f"the {what}'s bytes are no readable image ({message})") from None


def _rgb_pixels(image, where):
    if image.mode in _HIGH_DEPTH_MODES:
        raise UnsupportedModeError(where, f"image of mode {image.mode!r} (16-bit or float): no "
                                   "single right scale to 8 bits; give 8-bit RGB")
    if "A" in image.mode or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"))
        if (rgba[..., 3] != 255).any():
            raise UnsupportedModeError(where, "image with transparent pixels; give RGB")
        return rgba[..., :3]
    return np.asarray(image.convert("RGB"))


def _uint8(values, where, what):
    """`values` as uint8 when that loses nothing (whole numbers 0..255), else a DataError."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8)
    if values.dtype.kind not in "iuf":
        raise UnsupportedModeError(where, f"{what} of dtype {values.dtype}: give integers")
    if values.dtype.kind == "f" and values.size and not (
        np.isfinite(values).all() and (values == np.round(values)).all()
    ):
        raise UnsupportedModeError(where, f"{what} of {values.dtype} with fractional values: "
                                   "give uint8")
    if values.size and (values.min() < 0 or values.max() > 255):
        if what == "image":
            raise UnsupportedModeError(where, f"image values up to {values.max()} (min "
                                       f"{values.min()}): give uint8 pixels 0..255")
        bad = np.unique(values[(values < 0) | (values > 255)])[:5]
        raise LabelValueError(where, f"mask value(s) {bad.tolist()} are no class id "
                              f"(0..255 at most)")
    return values.astype(np.uint8)


def _mask_ids(mask, where, num_classes):
    """(H, W) uint8 ids of an example's mask; refuses what is not an id of a class or 255."""
    if isinstance(mask, (bytes, bytearray, memoryview, np.bytes_)):
        if bytes(mask).startswith(JPEG_SIGNATURE):
            raise UnsupportedModeError(where, "JPEG mask: a lossy format changes the values "
                                       "drawn; give PNG or an array")
        mask = _open(bytes(mask), where, "mask")
    if isinstance(mask, Image.Image):
        if mask.mode in ("RGB", "RGBA"):
            rgb = np.asarray(mask.convert("RGB"))
            if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                raise UnsupportedModeError(where, "mask is a colour image: give class ids (an "
                                           "(H, W) array, or an L or P mode image)")
            mask = rgb[..., 0]
        elif mask.mode not in ("L", "P", "1") + _HIGH_DEPTH_MODES:
            raise UnsupportedModeError(where, f"mask of mode {mask.mode!r}: give class ids")
    values = np.asarray(mask)
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 2:
        raise UnsupportedModeError(where, f"mask of shape {values.shape}: give (H, W) class ids")
    ids = _uint8(values, where, "mask")
    bad = np.unique(ids[(ids >= num_classes) & (ids != IGNORE_LABEL)])
    if bad.size:
        classes = f"{num_classes} class{'es' * (num_classes > 1)}"
        raise LabelValueError(where, f"mask value(s) {bad[:5].tolist()} are no class: ids are "
                              f"0..{num_classes - 1} ({classes}), 255 = ignore")
    return ids
