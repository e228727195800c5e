"""Asserts in the tf.data graph that name the file: a file cut short, sizes, class ids.

Each returns its input (or a boolean) with the check attached, so that a
wrong file stops the pipeline with an InvalidArgumentError whose message
holds the file's path. The checks are cheap next to the decoding they guard:
a comparison of a file's last bytes (a scan of its bytes only when it does
not end as usual), one comparison per label pixel.
"""

import tensorflow as tf

from ema_keras.data import file_formats as formats
from ema_keras.data.voc import IGNORE_LABEL


def header_byte(encoded, offset):
    return tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, 1), tf.uint8)[0], tf.int32)


def _ends_with(encoded, suffix):
    start = tf.maximum(tf.strings.length(encoded) - len(suffix), 0)
    return tf.equal(tf.strings.substr(encoded, start, len(suffix)), suffix)


def _last_marker(data, second_byte):
    """Position of the last 0xFF, `second_byte` pair in a uint8 vector (negative: none)."""
    pairs = tf.logical_and(tf.equal(data[:-1], 0xFF), tf.equal(data[1:], second_byte))
    positions = tf.range(tf.shape(data)[0] - 1)
    return tf.reduce_max(tf.where(pairs, positions, -1))


def jpeg_is_complete(encoded):
    """`file_formats.jpeg_is_complete` in the graph: the scan runs only without a final EOI."""

    def scan():
        data = tf.io.decode_raw(encoded, tf.uint8)
        last_scan = _last_marker(data, formats.JPEG_START_OF_SCAN[1])
        return tf.logical_and(
            last_scan >= 0, _last_marker(data, formats.JPEG_END_OF_IMAGE[1]) > last_scan
        )

    return tf.cond(
        _ends_with(encoded, formats.JPEG_END_OF_IMAGE), lambda: tf.constant(True), scan
    )


def png_is_complete(encoded):
    """`file_formats.png_is_complete` in the graph, for bytes of at least 8 (the signature)."""

    def scan():
        data = tf.io.decode_raw(encoded, tf.uint8)
        size = tf.shape(data)[0]
        found = tf.ones([size - len(formats.PNG_END) + 1], tf.bool)
        for offset, byte in enumerate(formats.PNG_END):
            window = data[offset : size - len(formats.PNG_END) + 1 + offset]
            found = tf.logical_and(found, tf.equal(window, byte))
        return tf.reduce_any(found)

    return tf.cond(_ends_with(encoded, formats.PNG_END), lambda: tf.constant(True), scan)


def assert_complete_jpeg(encoded, path):
    return tf.debugging.Assert(jpeg_is_complete(encoded), [formats.JPEG_CUT_SHORT + ":", path])


def assert_complete_png(encoded, path):
    return tf.debugging.Assert(png_is_complete(encoded), [formats.PNG_CUT_SHORT + ":", path])


def check_sizes(image, label, path):
    """Image and label of the same height and width, or an error naming the label file."""
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(label)[:2]))
    check = tf.debugging.Assert(
        same, ["image and label sizes differ:", path, tf.shape(image)[:2], tf.shape(label)[:2]]
    )
    with tf.control_dependencies([check]):
        return tf.identity(image), tf.identity(label)


def check_label_values(label, num_classes, path):
    """The whole label's ids below `num_classes` or 255, or an error naming the file.

    Run on the decoded label before any crop, so that a wrong id fails the
    first time its file is read, wherever the crop falls.
    """
    if num_classes is None:
        return label
    if label.dtype == tf.uint8:
        # uint8 sums wrap: 255 + 1 is 0, so this is the largest id but 255, plus one
        # (two cheap passes, half the time of a comparison with 255 and a select).
        largest = tf.cast(tf.reduce_max(label + 1), tf.int32) - 1
        valid = largest < num_classes
    else:  # e.g. int64 ids of a decoded dataset, not yet cast (a cast could wrap them)
        ids = tf.cast(label, tf.int32)
        largest = tf.reduce_max(tf.where(tf.equal(ids, IGNORE_LABEL), tf.zeros_like(ids), ids))
        valid = tf.logical_and(largest < num_classes, tf.reduce_min(ids) >= 0)
    message = f"label holds class ids >= num_classes={num_classes} other than 255:"
    check = tf.debugging.Assert(valid, [message, path, "largest:", largest])
    with tf.control_dependencies([check]):
        return tf.identity(label)
