"""Images and labels read into numpy, for tools outside the tf.data graph.

The converters (TFRecords, TFDS), the validator, the pre-training check and
the tests use these; the training pipeline decodes in the graph instead
(`ema_keras.data.decode`) and both agree pixel for pixel on every accepted
input. A source is a path, the file's bytes (a TFRecord field) or a decoded
array (a `tf.data` source); `name` names bytes and arrays in errors.

Pixel formats, the policy in one place:

- images: RGB taken as is; grayscale (L) and CMYK JPEGs converted to RGB (both
  TensorFlow's decoder and Pillow convert them the same way); anything with an
  alpha channel, palette images and 16-bit or float images are rejected, since
  there is no single right way to flatten them.
- labels: palette PNGs (the palette index is the class id), single-channel
  8-bit PNGs of class ids (SegmentationClassAug, Cityscapes, Context, COCO-Stuff),
  RGB PNGs painted with the VOC colour map (turned back into ids), `.mat` files
  (SBD's `GTcls.Segmentation`, COCO-Stuff-10k's `S`); a dataset's `label_map`
  turns the stored ids into training ids before they are checked.
- `strict=True` adds what the tf.data decoder needs, so that a file that
  passes never fails in the middle of a run (`file_formats` has the rules,
  which `decode` applies too): images JPEG or PNG, labels PNG or `.mat`, PNGs
  of 8 bits per sample, files not cut short, and palette PNGs that carry the
  VOC colours of the ids they use (the graph decoder only sees colours).
"""
import io
import json
import os

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ema_keras.data.dataset_spec import apply_label_map
from ema_keras.data.errors import (
    CorruptFileError,
    LabelValueError,
    MissingFileError,
    UnsupportedModeError,
)
from ema_keras.data.file_formats import MAT_SIGNATURE, check_encoding
from ema_keras.data.voc import IGNORE_LABEL, voc_colormap

IMAGE_MODES_CONVERTED = ("L", "CMYK")
SOURCE_KEY = "ema-keras-source"  # PNG text chunk: the .mat a converted label came from


def _name(source, name):
    if name is not None:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return "<array>" if isinstance(source, np.ndarray) else "<bytes>"


def _read_bytes(source, name):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise MissingFileError(name, "file does not exist")
    with open(path, "rb") as handle:
        return handle.read()


def _decode(data, name):
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError as error:
        raise CorruptFileError(
            name, "not a readable image (unknown format or corrupt header)"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        message = " ".join(str(error).split())
        raise CorruptFileError(name, f"cannot decode the file ({message})") from error
    return image


def load_image(source, *, name=None, strict=False):
    """An image (path, bytes or decoded array) as (H, W, 3) uint8 RGB."""
    name = _name(source, name)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[-1] != 3:
            raise UnsupportedModeError(
                name, f"decoded image must be (H, W, 3) uint8, got {source.dtype} {source.shape}"
            )
        return source
    data = _read_bytes(source, name)
    image = _decode(data, name)
    if strict:
        check_encoding(data, name, "image", ("JPEG", "PNG"))
    if image.mode in IMAGE_MODES_CONVERTED:
        image = image.convert("RGB")
    if image.mode != "RGB":
        raise UnsupportedModeError(
            name,
            f"image mode {image.mode!r} is not supported (expected RGB, L or CMYK); save it as RGB",
        )
    return np.asarray(image, dtype=np.uint8)


def colors_to_ids(rgb, path="<array>"):
    """Class ids of an (H, W, 3) array painted with the VOC colour map."""
    colormap = voc_colormap()
    keys = (colormap.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])).tolist()
    lookup = dict(zip(keys, range(256)))
    pixel_keys = rgb.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    unique, inverse = np.unique(pixel_keys, return_inverse=True)
    unknown = [k for k in unique.tolist() if k not in lookup]
    if unknown:
        first = unknown[0]
        raise LabelValueError(
            path,
            f"{len(unknown)} colour(s) outside the VOC colour map, e.g. "
            f"RGB {(first >> 16, (first >> 8) & 255, first & 255)}",
        )
    ids = np.array([lookup[k] for k in unique.tolist()], dtype=np.uint8)
    return ids[inverse].reshape(rgb.shape[:2])


def load_mat_label(source, name=None):
    """The ids of a `.mat` label (path or bytes) as (H, W) uint8.

    SBD's hold `GTcls.Segmentation`, COCO-Stuff-10k's an array `S`. Needs scipy.
    """
    name = _name(source, name)
    try:
        import scipy.io
    except ImportError:
        raise UnsupportedModeError(
            name, ".mat labels need scipy (pip install scipy), which is not installed"
        ) from None
    data = _read_bytes(source, name)
    try:
        contents = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
    except Exception as error:  # scipy raises several unrelated types on bad files
        message = " ".join(str(error).split())
        raise CorruptFileError(name, f"cannot read the MATLAB file ({message})") from error
    if "GTcls" in contents and hasattr(contents["GTcls"], "Segmentation"):
        key, segmentation = "GTcls.Segmentation", np.asarray(contents["GTcls"].Segmentation)
    elif "S" in contents:
        key, segmentation = "S", np.asarray(contents["S"])
    else:
        raise CorruptFileError(
            name,
            "no GTcls.Segmentation (SBD) or S (COCO-Stuff-10k) in this MATLAB file",
        )
    if segmentation.ndim != 2 or segmentation.min() < 0 or segmentation.max() > 255:
        raise CorruptFileError(
            name, f"{key} is not a 2-D array of 0..255 ids: {segmentation.shape}"
        )
    return segmentation.astype(np.uint8)


def _label_array(array, name):
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise UnsupportedModeError(
            name, f"decoded label must be (H, W) integer ids, got {array.dtype} {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() > 255):
        raise LabelValueError(name, f"class ids outside 0..255, e.g. {int(array.max())}")
    return array.astype(np.uint8)


def _palette_mismatch(image):
    palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
    used = np.unique(np.asarray(image))
    colormap = voc_colormap()
    return [
        int(i) for i in used if i >= len(palette) or not np.array_equal(palette[i], colormap[i])
    ]


def load_label(source, num_classes=None, *, name=None, strict=False, label_map=None):
    """A label as (H, W) uint8 class ids, 255 = ignore; checks ids when `num_classes` is given.

    `source` is a path, bytes or a decoded (H, W) / (H, W, 1) array. With
    `strict`, a palette PNG must also carry the VOC colours of the ids it uses.
    `label_map` (a dataset's, see `dataset_spec`) maps stored ids to training
    ids first.
    """
    name = _name(source, name)
    mismatched = []
    if isinstance(source, np.ndarray):
        label = _label_array(source, name)
    else:
        data = _read_bytes(source, name)
        if name.endswith(".mat") or data.startswith(MAT_SIGNATURE):
            label = load_mat_label(data, name)
        else:
            image = _decode(data, name)
            if strict:
                check_encoding(data, name, "label", ("PNG",))
            if image.mode in ("P", "L"):
                label = np.asarray(image, dtype=np.uint8)
                mismatched = _palette_mismatch(image) if strict and image.mode == "P" else []
            elif image.mode == "RGB":
                label = colors_to_ids(np.asarray(image), name)
            else:
                raise UnsupportedModeError(
                    name,
                    f"label mode {image.mode!r} is not supported (expected a palette, 8-bit "
                    "grayscale or VOC-coloured RGB PNG)",
                )
    label = apply_label_map(label, label_map)
    if num_classes is not None:
        check_label_values(label, num_classes, name)
    if mismatched:
        raise UnsupportedModeError(
            name,
            f"palette colours of ids {mismatched[:10]} differ from the VOC colour map; "
            "re-save with the VOC palette or as a grayscale PNG of ids",
        )
    return label


def check_label_values(label, num_classes, path):
    """Raises LabelValueError naming `path` if the label holds ids >= num_classes but 255."""
    bad = np.unique(label[(label >= num_classes) & (label != IGNORE_LABEL)])
    if bad.size:
        raise LabelValueError(
            path,
            f"class ids {bad.tolist()[:10]} are >= num_classes={num_classes} "
            "and not the ignore label 255",
        )


def palette_mismatch(source, name=None):
    """For a palette PNG, the ids it uses whose palette colour is not VOC's (else [])."""
    name = _name(source, name)
    image = _decode(_read_bytes(source, name), name)
    return _palette_mismatch(image) if image.mode == "P" else []


def encode_label_png(label, *, text=None):
    """(H, W) uint8 ids as a single-channel PNG (lossless, what SegmentationClassAug holds).

    `text` ({key: str}) goes into PNG text chunks, which decoders ignore.
    """
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(
        buffer, format="PNG", pnginfo=info
    )
    return buffer.getvalue()


def save_palette_png(label, path):
    """Writes (H, W) uint8 ids as a VOC palette PNG, like SegmentationClass/."""
    label = np.ascontiguousarray(label, dtype=np.uint8)
    image = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
    image.putpalette(voc_colormap().tobytes())
    image.save(os.fspath(path), format="PNG")


def _source_record(mat_path):
    if not os.path.isfile(mat_path):
        raise MissingFileError(mat_path, "file does not exist")
    stat = os.stat(mat_path)
    return {"path": os.path.abspath(mat_path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _recorded_source(png_path):
    try:
        with Image.open(png_path) as image:
            return json.loads(image.info[SOURCE_KEY])
    except (OSError, KeyError, ValueError, SyntaxError):
        return None


def _is_fresh(recorded, source, num_classes):
    """A converted PNG from this very .mat, its ids checked against as few classes or fewer."""
    if recorded is None or {k: recorded.get(k) for k in source} != source:
        return False
    checked = recorded.get("num_classes")
    return num_classes is None or (checked is not None and checked <= num_classes)


def _write_atomically(data, path):
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def convert_sbd_to_png(examples, output_dir, *, num_classes=None):
    """Writes the SBD `.mat` labels among `examples` as single-channel PNGs of ids.

    Gives a SegmentationClassAug-style folder that the tf.data graph can read;
    returns the examples in their order, `.mat` labels replaced by their PNGs
    and other examples unchanged. Each PNG records its source (path, size and
    mtime of the .mat, and `num_classes` when given) in a text chunk: a PNG
    whose .mat is unchanged is kept, so a resumed run converts nothing twice,
    and one whose .mat changed is redone. With `num_classes`, ids
    >= num_classes other than 255 raise LabelValueError naming the .mat. Each
    PNG is written under a temporary name and renamed, so an interrupted
    conversion leaves no torn file, and an error leaves no temporary one.
    """
    output_dir = os.fspath(output_dir)
    converted = []
    for example in examples:
        if not example.label_path.endswith(".mat"):
            converted.append(example)
            continue
        label_path = os.path.join(output_dir, f"{example.image_id}.png")
        source = _source_record(example.label_path)  # before reading: a later change redoes it
        if not _is_fresh(_recorded_source(label_path), source, num_classes):
            label_map = getattr(example, "label_map", None)
            label = load_label(example.label_path, num_classes=num_classes, label_map=label_map)
            record = json.dumps(dict(source, num_classes=num_classes))
            os.makedirs(output_dir, exist_ok=True)
            _write_atomically(encode_label_png(label, text={SOURCE_KEY: record}), label_path)
        # The PNG holds training ids: no map left to apply.
        converted.append(example._replace(label_path=label_path, label_map=None))
    return converted
