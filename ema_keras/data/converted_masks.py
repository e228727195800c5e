"""An `AnnotatedDataset` as `Example`s the tf.data graph reads, converting what it must, once.

The graph decodes JPEG and PNG images and 8-bit PNG labels of training ids;
what a user's data holds is often something else. `materialize` writes into
a cache folder (the run's `converted/`):

- masks that are not PNGs of ids (colour masks, 0/255 masks, LabelMe
  polygons, COCO RLE, CVAT exports) rendered by their reader, as
  single-channel PNGs of training ids;
- images the graph would see otherwise than the annotator did: a JPEG with
  an EXIF orientation (phones store it unrotated with a tag; annotation tools
  and viewers show it rotated, and the mask is drawn on that view;
  TensorFlow's decoder ignores the tag), and formats the graph does not
  decode (WebP, TIFF, BMP) or images embedded in an annotation file, as PNGs
  of the displayed pixels.

Each converted file is recorded in `manifest.json` with the path, size and
mtime of its sources and the reader's `converter` version: a second run on
unchanged files converts nothing; a changed source is converted again. Every
file is written under a temporary name and renamed, so an interrupted run
leaves no torn file. Every problem of every image is collected and raised at
once (`PreflightError`), before any training.

The mask must have the size of the image as displayed; a mask that has the
unrotated size of an EXIF-rotated image is refused naming both, as is any
other size mismatch (a square image cannot tell: the displayed view is what
annotation tools draw on, so it is the one used).
"""

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from ema_keras.data.dataset_spec import Example
from ema_keras.data.errors import (
    CorruptFileError,
    DataError,
    MissingFileError,
    PreflightError,
    SizeMismatchError,
)
from ema_keras.data.file_formats import JPEG_SIGNATURE, PNG_SIGNATURE
from ema_keras.data.image_io import encode_label_png

MANIFEST_FILE = "manifest.json"
VERSION = 1  # bump when the conversion itself changes: every cached file is redone
EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # width and height swap when displayed


def _stat_record(path):
    try:
        stat = os.stat(path)
    except OSError:
        raise MissingFileError(path, "file does not exist") from None
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def _bytes_record(data):
    return ["<embedded>", len(data), hashlib.sha256(data).hexdigest()]


def _write_atomically(data, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _open_image(source, name):
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.size  # noqa: B018 - the header is parsed: a non-image fails here
        return image
    except FileNotFoundError:
        raise MissingFileError(name, "image file does not exist") from None
    except (OSError, SyntaxError, ValueError) as error:
        message = " ".join(str(error).split())
        raise CorruptFileError(name, f"not a readable image ({message})") from None


def _orientation(image):
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1


def displayed_size(image):
    """(height, width) of a PIL image as viewers show it (EXIF orientation applied)."""
    width, height = image.size
    if _orientation(image) in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return height, width


def _needs_image_conversion(image, source):
    header = source[:8] if isinstance(source, bytes) else _head(source)
    graph_format = header.startswith(JPEG_SIGNATURE) or header.startswith(PNG_SIGNATURE)
    return isinstance(source, bytes) or not graph_format or _orientation(image) != 1


def _head(path):
    with open(path, "rb") as handle:
        return handle.read(8)


def _displayed_png(image, name):
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as error:
        message = " ".join(str(error).split())
        raise CorruptFileError(name, f"cannot decode the image ({message})") from None
    if image.mode in ("L", "CMYK", "P") or (image.mode == "RGBA" and _opaque(image)):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    # Other modes (alpha, 16-bit) are kept: the checks before a run refuse them by name.
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _opaque(image):
    return bool((np.asarray(image)[..., 3] == 255).all())


class _Manifest:
    def __init__(self, cache_dir):
        self.path = os.path.join(cache_dir, MANIFEST_FILE)
        try:
            with open(self.path, encoding="utf-8") as handle:
                value = json.load(handle)
            self.entries = value["entries"] if value.get("version") == VERSION else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.entries = {}
        self.changed = False

    def fresh(self, key, record):
        entry = self.entries.get(key)
        return entry is not None and entry["record"] == record and os.path.isfile(entry["path"])

    def remember(self, key, record, path):
        self.entries[key] = {"record": record, "path": path}
        self.changed = True

    def save(self):
        if self.changed:
            data = json.dumps({"version": VERSION, "entries": self.entries}, indent=0)
            _write_atomically(data.encode("utf-8"), self.path)


def _cached_path(cache_dir, kind, image_id):
    safe = image_id.replace("..", "__").lstrip("/")
    return os.path.join(cache_dir, kind, safe + ".png")


def _materialize_one(item, cache_dir, manifest, table_key):
    name = item.image if isinstance(item.image, str) else f"{item.image_id} (embedded image)"
    image = _open_image(item.image, name)
    size = displayed_size(image)
    image_path = item.image
    if _needs_image_conversion(image, item.image):
        source = _bytes_record(item.image) if isinstance(item.image, bytes) else _stat_record(
            item.image
        )
        record = [VERSION, source]
        key = f"image:{item.image_id}"
        image_path = _cached_path(cache_dir, "images", item.image_id)
        if not manifest.fresh(key, record):
            _write_atomically(_displayed_png(image, name), image_path)
            manifest.remember(key, record, image_path)
    if item.render is None:
        label_path = item.mask_path
        mask_size = _open_image(label_path, label_path).size[::-1]
        _check_size(mask_size, size, label_path, name, image)
        return Example(item.image_id, image_path, label_path)
    record = [VERSION, item.converter, table_key] + [_stat_record(p) for p in item.sources]
    key = f"mask:{item.image_id}"
    label_path = _cached_path(cache_dir, "masks", item.image_id)
    if not manifest.fresh(key, record):
        ids = np.asarray(item.render(size))
        _check_size(ids.shape[:2], size, item.sources[0], name, image)
        _write_atomically(encode_label_png(ids.astype(np.uint8)), label_path)
        manifest.remember(key, record, label_path)
    return Example(item.image_id, image_path, label_path)


def _check_size(mask_size, size, mask_name, image_name, image):
    mask_size = tuple(int(n) for n in mask_size)
    if mask_size == tuple(size):
        return
    rotated = size != image.size[::-1]
    hint = (
        f" (the image's EXIF orientation {_orientation(image)} rotates it from "
        f"{image.size[1]}x{image.size[0]}; masks are drawn on the displayed view)"
        if rotated and mask_size == image.size[::-1]
        else ""
    )
    raise SizeMismatchError(
        mask_name,
        f"mask is {mask_size[0]}x{mask_size[1]} but image {image_name} is "
        f"{size[0]}x{size[1]} as displayed{hint}",
    )


def materialize(dataset, cache_dir, *, num_workers=None):
    """Examples (in `dataset.images`' order) the tf.data graph reads; see the module docstring.

    Raises PreflightError listing every image or mask that cannot be used.
    """
    cache_dir = os.fspath(cache_dir)
    manifest = _Manifest(cache_dir)
    table_key = hashlib.sha256(
        json.dumps(dataset.class_table.to_json(), sort_keys=True).encode("utf-8")
    ).hexdigest()[:16]

    def one(item):
        try:
            return _materialize_one(item, cache_dir, manifest, table_key)
        except DataError as error:
            return error

    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, dataset.images))
    manifest.save()  # what did convert is kept, also when others failed
    problems = [result for result in results if isinstance(result, DataError)]
    if problems:
        raise PreflightError(problems, f"{dataset.kind} dataset {dataset.root}")
    return results
