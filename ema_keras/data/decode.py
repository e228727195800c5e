"""Files to decoded examples, in the tf.data graph.

An example is a dict: `image_id` (string), `image` (H, W, 3) uint8 and
`label` (H, W) uint8 class ids, 255 = ignore. Three sources give it:

- a list of `VOCExample` (folders on disk, see `ema_keras.data.voc`);
- a glob pattern of TFRecord files written by `write_tfrecords`;
- a `tf.data.Dataset` of such dicts (e.g. `tfds.load("voc_segmentation")`;
  a label of shape (H, W, 1), as TFDS gives it, is squeezed).

Labels in PNGs are decoded without Python: TensorFlow's PNG decoder turns a
palette PNG into colours, and the VOC colour map is inverted bit by bit back to
the class id; single-channel PNGs hold the ids directly. Asserts in the graph
name the file when a pixel format or a size is wrong (`ema-keras-validate`
finds all of these and more before a run starts).
"""

import glob
import os

import numpy as np
import tensorflow as tf

from ema_keras.data.voc import voc_colormap

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR of a PNG: byte 24 is the bit depth, byte 25 the colour type.
_PNG_GRAYSCALE, _PNG_RGB, _PNG_PALETTE = 0, 2, 3

TFRECORD_FEATURES = {
    "image/id": tf.io.FixedLenFeature([], tf.string),
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "label/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
}


def _header_byte(encoded, offset):
    return tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, 1), tf.uint8)[0], tf.int32)


def decode_image(encoded, path):
    """JPEG or PNG bytes to (H, W, 3) uint8; grayscale and CMYK are converted.

    JPEGs are decoded with the accurate integer IDCT, which gives the same
    pixels as Pillow and OpenCV (the fast default differs by a few levels).
    """
    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 3), b"\xff\xd8\xff")
    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_SIGNATURE)
    check = tf.debugging.Assert(tf.logical_or(is_jpeg, is_png), ["not a JPEG or PNG image:", path])
    with tf.control_dependencies([check]):
        image = tf.cond(
            is_jpeg,
            lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_png(encoded, channels=3),
        )
    image.set_shape([None, None, 3])
    return image


def colors_to_ids(rgb, path):
    """(H, W, 3) uint8 painted with the VOC colour map to (H, W) uint8 ids.

    The map sends bit 3*b + c of the id to bit 7 - b of channel c, so reading
    those bits back gives the id; a colour whose id does not map back to it is
    not in the map, and the assert names the file.
    """
    rgb = tf.cast(rgb, tf.int32)
    ids = tf.zeros(tf.shape(rgb)[:2], tf.int32)
    for bit in range(3):
        for channel in range(3):
            channel_bit = tf.bitwise.bitwise_and(
                tf.bitwise.right_shift(rgb[..., channel], 7 - bit), 1
            )
            ids = tf.bitwise.bitwise_or(ids, tf.bitwise.left_shift(channel_bit, 3 * bit + channel))
    ids = tf.bitwise.bitwise_and(ids, 255)
    back = tf.gather(tf.constant(voc_colormap(), tf.int32), ids)
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(back, rgb)), ["label colours outside the VOC colour map:", path]
    )
    with tf.control_dependencies([check]):
        return tf.cast(ids, tf.uint8)


def decode_label(encoded, path):
    """Label PNG bytes to (H, W) uint8 class ids (palette, 8-bit grayscale or VOC-coloured RGB)."""
    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_SIGNATURE)
    check_png = tf.debugging.Assert(
        is_png, ["label is not a PNG (convert .mat labels first):", path]
    )
    with tf.control_dependencies([check_png]):
        bit_depth = _header_byte(encoded, 24)
        color_type = _header_byte(encoded, 25)
    supported = tf.logical_and(
        tf.equal(bit_depth, 8),
        tf.reduce_any(tf.equal(color_type, [_PNG_GRAYSCALE, _PNG_RGB, _PNG_PALETTE])),
    )
    check_type = tf.debugging.Assert(
        supported,
        ["label PNG must be 8-bit palette, grayscale or RGB:", path, bit_depth, color_type],
    )
    with tf.control_dependencies([check_type]):
        label = tf.cond(
            tf.equal(color_type, _PNG_GRAYSCALE),
            lambda: tf.io.decode_png(encoded, channels=1)[..., 0],
            lambda: colors_to_ids(tf.io.decode_png(encoded, channels=3), path),
        )
    label.set_shape([None, None])
    return label


def check_sizes(image, label, path):
    """Image and label of the same height and width, or an error naming the label file."""
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(label)[:2]))
    check = tf.debugging.Assert(
        same, ["image and label sizes differ:", path, tf.shape(image)[:2], tf.shape(label)[:2]]
    )
    with tf.control_dependencies([check]):
        return tf.identity(image), tf.identity(label)


@tf.autograph.experimental.do_not_convert
def _read_files(image_id, image_path, label_path):
    return (
        image_id,
        tf.io.read_file(image_path),
        tf.io.read_file(label_path),
        image_path,
        label_path,
    )


def _decode_files(image_id, image_bytes, label_bytes, image_path, label_path):
    image = decode_image(image_bytes, image_path)
    label = decode_label(label_bytes, label_path)
    image, label = check_sizes(image, label, label_path)
    return {"image_id": image_id, "image": image, "label": label}


def parse_tfrecord(serialized):
    features = tf.io.parse_single_example(serialized, TFRECORD_FEATURES)
    name = tf.strings.join(["tfrecord example ", features["image/id"]])
    image = decode_image(features["image/encoded"], name)
    label = decode_label(features["label/encoded"], name)
    image, label = check_sizes(image, label, name)
    return {"image_id": features["image/id"], "image": image, "label": label}


def _standardize_dict(example):
    """A dict of image_id, image and label (decoded, or still bytes) as our example dict."""
    image_id = example.get("image_id", tf.constant(""))
    image, label = example["image"], example["label"]
    # Bytes come from e.g. tfds.load(..., decoders={"image": tfds.decode.SkipDecoding()}).
    if image.dtype == tf.string:
        image = decode_image(image, image_id)
    if label.dtype == tf.string:
        label = decode_label(label, image_id)
    if label.shape.rank == 3:
        label = tf.squeeze(label, axis=-1)
    image, label = check_sizes(tf.cast(image, tf.uint8), tf.cast(label, tf.uint8), image_id)
    return {"image_id": image_id, "image": image, "label": label}


def _shard(dataset, input_context):
    if input_context is None or input_context.num_input_pipelines == 1:
        return dataset
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def list_tfrecord_files(pattern):
    files = sorted(glob.glob(os.fspath(pattern)))
    if not files:
        raise FileNotFoundError(f"{pattern}: no TFRecord file matches this pattern")
    return files


def source_dataset(source, *, input_context=None):
    """Undecoded elements of a list of VOCExample, a TFRecord pattern or a Dataset of dicts.

    Sharded by `input_context` (TFRecords by file when there are enough files,
    else by record). Returns (dataset, read_fn, decode_fn): `read_fn` turns an
    element into bytes (None when it already is bytes or decoded) and
    `decode_fn` turns that into the example dict, so that callers can shuffle
    cheap elements (paths) and cache the read bytes before decoding.
    """
    if isinstance(source, tf.data.Dataset):
        return _shard(source, input_context), None, _standardize_dict
    if isinstance(source, (str, os.PathLike)):
        files = list_tfrecord_files(source)
        if input_context is not None and len(files) >= input_context.num_input_pipelines:
            files_dataset = _shard(tf.data.Dataset.from_tensor_slices(files), input_context)
            records = files_dataset.interleave(
                tf.data.TFRecordDataset,
                cycle_length=4,
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        else:
            records = _shard(tf.data.TFRecordDataset(files), input_context)
        return records, None, parse_tfrecord
    examples = list(source)
    if not examples:
        raise ValueError("examples is empty: nothing to read")
    mat_labels = [e.label_path for e in examples if os.fspath(e.label_path).endswith(".mat")]
    if mat_labels:
        raise ValueError(
            f"{mat_labels[0]}: SBD .mat labels cannot be decoded in the tf.data graph; convert "
            "them once with ema_keras.data.write_tfrecords (or to PNGs with convert_sbd_to_png)"
        )
    columns = tuple(
        np.array([os.fspath(getattr(e, field)) for e in examples])
        for field in ("image_id", "image_path", "label_path")
    )
    dataset = _shard(tf.data.Dataset.from_tensor_slices(columns), input_context)
    return dataset, _read_files, _decode_files


def apply(fn, element):
    """Calls `fn` on a dataset element, unpacking tuples as tf.data does."""
    return fn(*element) if isinstance(element, tuple) else fn(element)


def examples_dataset(source, *, input_context=None):
    """Decoded examples (dicts of image_id, image, label) in the source's order."""
    dataset, read_fn, decode_fn = source_dataset(source, input_context=input_context)

    @tf.autograph.experimental.do_not_convert
    def read_and_decode(*element):
        element = element if len(element) > 1 else element[0]
        if read_fn is not None:
            element = apply(read_fn, element)
        return apply(decode_fn, element)

    return dataset.map(read_and_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
