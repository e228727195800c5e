"""Images and labels read into numpy, for tools outside the tf.data graph.

The converters (TFRecords, TFDS), the validator and the tests use these; the
training pipeline decodes in the graph instead (`ema_keras.data.decode`) and
both agree pixel for pixel on every accepted input.

Pixel formats, the policy in one place:

- images: RGB taken as is; grayscale (L) and CMYK JPEGs converted to RGB (both
  TensorFlow's decoder and Pillow convert them the same way); anything with an
  alpha channel, palette images and 16-bit or float images are rejected, since
  there is no single right way to flatten them.
- labels: palette PNGs (the palette index is the class id), single-channel
  8-bit PNGs of class ids (SegmentationClassAug), RGB PNGs painted with the VOC
  colour map (turned back into ids), SBD `.mat` files. A palette PNG must carry
  the VOC colour map for the ids it uses, because the graph decoder can only see
  colours; the validator checks it.
"""

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from ema_keras.data.errors import (
    CorruptFileError,
    LabelValueError,
    MissingFileError,
    UnsupportedModeError,
)
from ema_keras.data.voc import voc_colormap

IMAGE_MODES_CONVERTED = ("L", "CMYK")


def _open(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(path, "file does not exist")
    try:
        with open(path, "rb") as handle:
            image = Image.open(io.BytesIO(handle.read()))
            image.load()
    except UnidentifiedImageError as error:
        raise CorruptFileError(
            path, "not a readable image (unknown format or corrupt header)"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptFileError(path, f"cannot decode the image ({error})") from error
    return image


def load_image(path):
    """An image as (H, W, 3) uint8 RGB."""
    image = _open(path)
    if image.mode in IMAGE_MODES_CONVERTED:
        image = image.convert("RGB")
    if image.mode != "RGB":
        raise UnsupportedModeError(
            path,
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


def load_mat_label(path):
    """`GTcls.Segmentation` of an SBD `.mat` file as (H, W) uint8."""
    import scipy.io

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(path, "file does not exist")
    try:
        contents = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as error:  # scipy raises several unrelated types on bad files
        raise CorruptFileError(path, f"cannot read the MATLAB file ({error})") from error
    if "GTcls" not in contents or not hasattr(contents["GTcls"], "Segmentation"):
        raise CorruptFileError(
            path, "no GTcls.Segmentation in this MATLAB file (is it an SBD cls/ file?)"
        )
    segmentation = np.asarray(contents["GTcls"].Segmentation)
    if segmentation.ndim != 2 or segmentation.min() < 0 or segmentation.max() > 255:
        raise CorruptFileError(
            path, f"GTcls.Segmentation is not a 2-D array of 0..255 ids: {segmentation.shape}"
        )
    return segmentation.astype(np.uint8)


def load_label(path, num_classes=None):
    """A label as (H, W) uint8 class ids, 255 = ignore; checks ids when `num_classes` is given."""
    path = os.fspath(path)
    if path.endswith(".mat"):
        label = load_mat_label(path)
    else:
        image = _open(path)
        if image.mode in ("P", "L"):
            label = np.asarray(image, dtype=np.uint8)
        elif image.mode == "RGB":
            label = colors_to_ids(np.asarray(image), path)
        else:
            raise UnsupportedModeError(
                path,
                f"label mode {image.mode!r} is not supported (expected a palette, 8-bit "
                "grayscale or VOC-coloured RGB PNG)",
            )
    if num_classes is not None:
        check_label_values(label, num_classes, path)
    return label


def check_label_values(label, num_classes, path):
    bad = np.unique(label[(label >= num_classes) & (label != 255)])
    if bad.size:
        raise LabelValueError(
            path,
            f"class ids {bad.tolist()[:10]} are >= num_classes={num_classes} "
            "and not the ignore label 255",
        )


def palette_mismatch(path):
    """For a palette PNG, the ids it uses whose palette colour is not VOC's (else [])."""
    image = _open(path)
    if image.mode != "P":
        return []
    palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
    used = np.unique(np.asarray(image))
    colormap = voc_colormap()
    return [
        int(i) for i in used if i >= len(palette) or not np.array_equal(palette[i], colormap[i])
    ]


def encode_label_png(label):
    """(H, W) uint8 ids as a single-channel PNG (lossless, what SegmentationClassAug holds)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_palette_png(label, path):
    """Writes (H, W) uint8 ids as a VOC palette PNG, like SegmentationClass/."""
    label = np.ascontiguousarray(label, dtype=np.uint8)
    image = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
    image.putpalette(voc_colormap().tobytes())
    image.save(os.fspath(path), format="PNG")


def convert_sbd_to_png(examples, output_dir):
    """Writes the SBD `.mat` labels among `examples` as single-channel PNGs of ids.

    Gives a SegmentationClassAug-style folder that the tf.data graph can read;
    returns the examples in their order, `.mat` labels replaced by their PNGs
    and other examples unchanged. A label converted before is kept, so a
    resumed run converts nothing twice; each PNG is written under a temporary
    name and renamed, so an interrupted conversion leaves no torn file.
    """
    output_dir = os.fspath(output_dir)
    converted = []
    for example in examples:
        if not example.label_path.endswith(".mat"):
            converted.append(example)
            continue
        label_path = os.path.join(output_dir, f"{example.image_id}.png")
        if not os.path.isfile(label_path):
            os.makedirs(output_dir, exist_ok=True)
            partial = f"{label_path}.{os.getpid()}.partial"
            with open(partial, "wb") as handle:
                handle.write(encode_label_png(load_label(example.label_path)))
            os.replace(partial, label_path)
        converted.append(example._replace(label_path=label_path))
    return converted
