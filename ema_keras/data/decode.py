"""Files to decoded examples, in the tf.data graph.

An example is a dict: `image_id` (string), `image` (H, W, 3) uint8 and
`label` (H, W) uint8 class ids, 255 = ignore. Three sources give it:

- a list of `Example` (folders on disk, see `ema_keras.data.voc` and the
  other dataset modules; an example's `label_map` turns stored ids into
  training ids right after decoding, e.g. Cityscapes' 34 ids into 19);
- a glob pattern of TFRecord files written by `write_tfrecords`;
- a `tf.data.Dataset` of such dicts (e.g. `tfds.load("voc_segmentation")`;
  a label of shape (H, W, 1), as TFDS gives it, is squeezed).

Labels in PNGs are decoded without Python: TensorFlow's PNG decoder turns a
palette PNG into colours, and the VOC colour map is inverted bit by bit back to
the class id; single-channel PNGs hold the ids directly.

Asserts in the graph name the file when a pixel format, a size or a class id
is wrong, or when a file is cut short. TensorFlow's decoders fail on a
truncated file with a message that cannot carry the path (an op's error is
fixed C++ text), so the file's end is checked first, with the rules of
`file_formats` that the checks before a run (`preflight`, `ema-keras-validate`)
apply too: a cheap comparison of the last bytes, a scan only for files that
do not end as usual. Any other damage in the middle of a file that TensorFlow's
decoder still refuses surfaces as its own error; the preflight finds those.
"""

import functools
import glob
import os

import numpy as np
import tensorflow as tf

from ema_keras.data import file_formats as formats
from ema_keras.data import graph_checks as checks
from ema_keras.data.dataset_spec import label_map_array, shared_label_map
from ema_keras.data.voc import voc_colormap

TFRECORD_FEATURES = {
    "image/id": tf.io.FixedLenFeature([], tf.string),
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "label/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
}


def _decode_jpeg(encoded, path):
    with tf.control_dependencies([checks.assert_complete_jpeg(encoded, path)]):
        return tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")


def _decode_png_image(encoded, path):
    bit_depth = checks.header_byte(encoded, formats.PNG_BIT_DEPTH_OFFSET)
    color_type = checks.header_byte(encoded, formats.PNG_COLOR_TYPE_OFFSET)
    supported = tf.logical_and(
        tf.equal(bit_depth, 8),
        tf.reduce_any(tf.equal(color_type, [formats.PNG_GRAYSCALE, formats.PNG_RGB])),
    )
    message = "image PNG must be 8-bit RGB or grayscale (no alpha, no palette):"
    check_type = tf.debugging.Assert(supported, [message, path, bit_depth, color_type])
    with tf.control_dependencies([check_type, checks.assert_complete_png(encoded, path)]):
        return tf.io.decode_png(encoded, channels=3)


def decode_image(encoded, path):
    """JPEG or PNG bytes to (H, W, 3) uint8; grayscale and CMYK are converted.

    JPEGs are decoded with the accurate integer IDCT, which gives the same
    pixels as Pillow and OpenCV (the fast default differs by a few levels).
    PNGs with alpha or a palette, of other than 8 bits, and files cut short
    fail with an error naming `path`, as `image_io.load_image(strict=True)`.
    """
    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 3), formats.JPEG_SIGNATURE)
    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), formats.PNG_SIGNATURE)
    check = tf.debugging.Assert(tf.logical_or(is_jpeg, is_png), ["not a JPEG or PNG image:", path])
    with tf.control_dependencies([check]):
        image = tf.cond(
            is_jpeg, lambda: _decode_jpeg(encoded, path), lambda: _decode_png_image(encoded, path)
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
    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), formats.PNG_SIGNATURE)
    check_png = tf.debugging.Assert(
        is_png, ["label is not a PNG (convert .mat labels first):", path]
    )
    with tf.control_dependencies([check_png]):
        bit_depth = checks.header_byte(encoded, formats.PNG_BIT_DEPTH_OFFSET)
        color_type = checks.header_byte(encoded, formats.PNG_COLOR_TYPE_OFFSET)
        check_end = checks.assert_complete_png(encoded, path)
    supported = tf.logical_and(
        tf.equal(bit_depth, 8),
        tf.reduce_any(
            tf.equal(color_type, [formats.PNG_GRAYSCALE, formats.PNG_RGB, formats.PNG_PALETTE])
        ),
    )
    check_type = tf.debugging.Assert(
        supported,
        ["label PNG must be 8-bit palette, grayscale or RGB:", path, bit_depth, color_type],
    )
    with tf.control_dependencies([check_type, check_end]):
        label = tf.cond(
            tf.equal(color_type, formats.PNG_GRAYSCALE),
            lambda: tf.io.decode_png(encoded, channels=1)[..., 0],
            lambda: colors_to_ids(tf.io.decode_png(encoded, channels=3), path),
        )
    label.set_shape([None, None])
    return label


@tf.autograph.experimental.do_not_convert
def _read_files(image_id, image_path, label_path):
    return (
        image_id,
        tf.io.read_file(image_path),
        tf.io.read_file(label_path),
        image_path,
        label_path,
    )


def map_label(label, label_map):
    """(H, W) uint8 stored ids -> training ids by a dataset's table (None: unchanged)."""
    if label_map is None:
        return label
    return tf.gather(tf.constant(label_map_array(label_map)), tf.cast(label, tf.int32))


def _decode_files(
    image_id, image_bytes, label_bytes, image_path, label_path, *, num_classes, label_map=None
):
    image = decode_image(image_bytes, image_path)
    label = map_label(decode_label(label_bytes, label_path), label_map)
    label = checks.check_label_values(label, num_classes, label_path)
    image, label = checks.check_sizes(image, label, label_path)
    return {"image_id": image_id, "image": image, "label": label}


def parse_tfrecord(file_name, serialized, *, num_classes=None):
    """A record of `write_tfrecords` as an example dict; errors name the file and the id."""
    features = tf.io.parse_single_example(serialized, TFRECORD_FEATURES)
    name = tf.strings.join([file_name, " example ", features["image/id"]])
    image = decode_image(features["image/encoded"], name)
    label = decode_label(features["label/encoded"], name)
    label = checks.check_label_values(label, num_classes, name)
    image, label = checks.check_sizes(image, label, name)
    return {"image_id": features["image/id"], "image": image, "label": label}


def _standardize_dict(example, *, num_classes=None):
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
    label = checks.check_label_values(label, num_classes, image_id)  # before a cast could wrap ids
    image, label = tf.cast(image, tf.uint8), tf.cast(label, tf.uint8)
    image, label = checks.check_sizes(image, label, image_id)
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


def source_dataset(source, *, input_context=None, num_classes=None):
    """Undecoded elements of a list of Example, a TFRecord pattern or a Dataset of dicts.

    Sharded by `input_context` (TFRecords by file when there are enough files,
    else by record). Returns (dataset, read_fn, decode_fn): `read_fn` turns an
    element into bytes (None when it already is bytes or decoded) and
    `decode_fn` turns that into the example dict, so that callers can shuffle
    cheap elements (paths) and cache the read bytes before decoding. With
    `num_classes`, every decoded label is checked whole (ids < num_classes or
    255) and an error names its file.
    """
    if isinstance(source, tf.data.Dataset):
        decode_fn = functools.partial(_standardize_dict, num_classes=num_classes)
        return _shard(source, input_context), None, decode_fn
    if isinstance(source, (str, os.PathLike)):
        files = list_tfrecord_files(source)
        decode_fn = functools.partial(parse_tfrecord, num_classes=num_classes)
        files_dataset = tf.data.Dataset.from_tensor_slices(files)

        def records_of(name):  # (file name, record) pairs, so that errors name the file
            return tf.data.TFRecordDataset(name).map(lambda record: (name, record))

        if input_context is not None and len(files) >= input_context.num_input_pipelines:
            records = _shard(files_dataset, input_context).interleave(
                records_of,
                cycle_length=4,
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        else:
            records = _shard(files_dataset.flat_map(records_of), input_context)
        return records, None, decode_fn
    examples = list(source)
    if not examples:
        raise ValueError("examples is empty: nothing to read")
    mat_labels = [e.label_path for e in examples if os.fspath(e.label_path).endswith(".mat")]
    if mat_labels:
        raise ValueError(
            f"{mat_labels[0]}: .mat labels (SBD, COCO-Stuff-10k) cannot be decoded in the tf.data "
            "graph; convert them once with ema_keras.data.write_tfrecords (or to PNGs with "
            "convert_sbd_to_png)"
        )
    label_map = shared_label_map(examples)
    columns = tuple(
        np.array([os.fspath(getattr(e, field)) for e in examples])
        for field in ("image_id", "image_path", "label_path")
    )
    dataset = _shard(tf.data.Dataset.from_tensor_slices(columns), input_context)
    decode_fn = functools.partial(_decode_files, num_classes=num_classes, label_map=label_map)
    return dataset, _read_files, decode_fn


def apply(fn, element):
    """Calls `fn` on a dataset element, unpacking tuples as tf.data does."""
    return fn(*element) if isinstance(element, tuple) else fn(element)


def examples_dataset(source, *, input_context=None, num_classes=None):
    """Decoded examples (dicts of image_id, image, label) in the source's order.

    With `num_classes`, labels holding other ids than 0..num_classes-1 and 255
    fail with an error naming the file.
    """
    dataset, read_fn, decode_fn = source_dataset(
        source, input_context=input_context, num_classes=num_classes
    )

    @tf.autograph.experimental.do_not_convert
    def read_and_decode(*element):
        element = element if len(element) > 1 else element[0]
        if read_fn is not None:
            element = apply(read_fn, element)
        return apply(decode_fn, element)

    return dataset.map(read_and_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
