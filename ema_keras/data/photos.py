"""Photos as prediction reads them: whatever people keep pictures in, as (H, W, 3) uint8 RGB.

Training is strict about pixel formats (`image_io`: what it cannot flatten in
one right way it refuses); a photo given to `predict.py` is read whenever it
can be used, and what was changed on the way is said in a one-line note:

- every format Pillow reads: JPEG, PNG, WebP, TIFF, BMP, GIF (HEIC needs a
  Pillow plug-in; without one it is refused, saying so);
- the EXIF orientation is applied (`ImageOps.exif_transpose`), so the label
  map has the size and the side up that phones and annotation tools show;
  no note, since that is what the picture is;
- an alpha channel is dropped (RGBA, LA, palette transparency): the colours
  are the photo, and what is under a transparent pixel is kept as it is
  rather than painted white or black;
- palette, grayscale, black-and-white and CMYK images are converted to RGB
  (grayscale and CMYK as `image_io.load_image` converts them);
- 16 bits per sample are scaled to 8 (the high byte, as Pillow reads 16-bit
  RGB PNGs); 32-bit integer samples are used if they hold 16-bit values;
- animated images and multi-page files give their first frame.

Float images (mode F) are refused: there is no single right scale for them.
A plain RGB JPEG or PNG without EXIF orientation gives exactly the pixels of
`image_io.load_image`, i.e. what training sees.
"""

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ema_keras.data.errors import (
    CorruptFileError,
    DataError,
    MissingFileError,
    UnsupportedModeError,
)

# What a folder walk picks up (compared ignoring case). HEIC is listed so
# that a phone's photos are reported as unreadable rather than passed over.
PHOTO_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif",
    ".heic", ".heif",
)  # fmt: skip
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_MODE_NAMES = {"L": "grayscale", "1": "black and white", "P": "palette image"}
# Formats whose extra frames are not pages of a document (an MPO's second
# picture is its preview or stereo pair).
_SINGLE_PICTURE_FORMATS = ("MPO",)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError)


def load_photo(path):
    """A photo file as (H, W, 3) uint8 RGB, displayed side up, and a note on its conversion.

    Returns:
        (pixels, note): `note` is None for an RGB image taken as it is, else
        one line, e.g. "RGBA: alpha dropped" or "16-bit grayscale: scaled to
        8 bits, converted to RGB; first of 2 frames".

    Raises:
        MissingFileError: no such file.
        CorruptFileError: not an image, or it cannot be decoded (the error
            names the file and says why).
        UnsupportedModeError: a float image.
        DataError: more pixels than Pillow agrees to decode.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise MissingFileError(name, "file does not exist")
    try:
        with Image.open(name) as image:
            notes = []
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and image.format not in _SINGLE_PICTURE_FORMATS:
                notes.append(f"first of {frames} frames")
            sixteen_bit = any(";16" in str(tile[-1]) for tile in image.tile)
            image.load()
            try:
                image = ImageOps.exif_transpose(image)
            except _DECODE_ERRORS:  # the pixels are fine, their orientation is unknown
                notes.append("unreadable EXIF: orientation not applied")
            pixels, conversion = _to_rgb(image, name, sixteen_bit)
    except UnidentifiedImageError as error:
        raise CorruptFileError(name, _unidentified_reason(name)) from error
    except Image.DecompressionBombError as error:
        raise DataError(name, f"too large to decode ({' '.join(str(error).split())})") from error
    except _DECODE_ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise CorruptFileError(name, f"cannot decode: {message}") from error
    notes = ([conversion] if conversion else []) + notes
    return pixels, "; ".join(notes) if notes else None


def _to_rgb(image, name, sixteen_bit):
    mode = image.mode
    if mode == "RGB":
        note = "16-bit: scaled to 8 bits" if sixteen_bit else None
        return np.asarray(image, np.uint8), note
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise UnsupportedModeError(
                name, "32-bit integer samples beyond 16 bits: save it with 8 or 16 bits per sample"
            )
        gray = (values >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1), "16-bit grayscale: scaled to 8 bits, to RGB"
    if mode == "F":
        raise UnsupportedModeError(
            name, "float image (mode F): no single right scale to 8 bits; save it as 8-bit RGB"
        )
    alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
    described = _MODE_NAMES.get(mode, mode)
    if alpha:
        image = image.convert("RGBA")
        note = f"{described}: alpha dropped" if mode in ("RGBA", "RGBa") else (
            f"{described}: converted to RGB, alpha dropped"
        )
    else:
        note = f"{described}: converted to RGB"
    try:
        rgb = image.convert("RGB")
    except ValueError as error:
        message = f"image mode {mode!r} cannot be converted to RGB"
        raise UnsupportedModeError(name, message) from error
    return np.asarray(rgb, np.uint8), note


def _unidentified_reason(name):
    extension = os.path.splitext(name)[1].lower()
    if extension in (".heic", ".heif"):
        return "HEIC/HEIF needs a Pillow plug-in (pillow-heif): convert it to JPEG"
    if extension in PHOTO_EXTENSIONS:
        return f"not an image, or a corrupt one (no {extension} header Pillow recognises)"
    return "not an image"
