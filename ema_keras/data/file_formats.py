"""What a complete JPEG or PNG file looks like, for the numpy readers and the graph decoder.

The tf.data decoder reads JPEG and PNG only, PNGs of 8 bits per sample, and
fails (without naming the file) on a file cut short. These rules let both
`image_io` (numpy, the checks before a run) and `decode` (the graph) refuse
the same files with the same words, naming the file. A file cut short, e.g.
by an interrupted copy, is recognised by its missing end: a JPEG's
end-of-image marker after its last scan, a PNG's IEND chunk.
"""

from ema_keras.data.errors import CorruptFileError, UnsupportedModeError

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAT_SIGNATURE = b"MATLAB"  # the text header of MATLAB 5 files, what SBD holds
JPEG_END_OF_IMAGE = b"\xff\xd9"
JPEG_START_OF_SCAN = b"\xff\xda"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC, closing every PNG
# Bytes of a PNG's IHDR chunk (it always comes first).
PNG_BIT_DEPTH_OFFSET, PNG_COLOR_TYPE_OFFSET = 24, 25
PNG_GRAYSCALE, PNG_RGB, PNG_PALETTE = 0, 2, 3

JPEG_CUT_SHORT = "JPEG cut short: no end-of-image marker after its last scan"
PNG_CUT_SHORT = "PNG cut short: no IEND chunk"


def jpeg_is_complete(data):
    """Whether JPEG bytes hold an end-of-image marker after their last scan.

    Entropy-coded data never holds either marker, so a file cut short has no
    end marker after its last scan; bytes appended after a complete image
    (zero padding, a second image) pass.
    """
    if data.endswith(JPEG_END_OF_IMAGE):
        return True
    last_scan = data.rfind(JPEG_START_OF_SCAN)
    return last_scan >= 0 and data.rfind(JPEG_END_OF_IMAGE) > last_scan


def png_is_complete(data):
    return PNG_END in data


def check_encoding(data, name, what, formats):
    """Raises a DataError naming `name` unless `data` is a complete file the graph decodes.

    `what` is "image" or "label"; `formats` the accepted ones ("JPEG", "PNG").
    """
    if data.startswith(JPEG_SIGNATURE) and "JPEG" in formats:
        if not jpeg_is_complete(data):
            raise CorruptFileError(name, JPEG_CUT_SHORT)
    elif data.startswith(PNG_SIGNATURE) and len(data) > PNG_COLOR_TYPE_OFFSET:
        bit_depth = data[PNG_BIT_DEPTH_OFFSET]
        if bit_depth != 8:
            raise UnsupportedModeError(
                name, f"{bit_depth}-bit PNG; the {what} must have 8 bits per sample"
            )
        if not png_is_complete(data):
            raise CorruptFileError(name, PNG_CUT_SHORT)
    else:
        raise UnsupportedModeError(
            name, f"the {what} is not a {' or '.join(formats)} file (the graph decodes no other)"
        )
