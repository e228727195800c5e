"""Sharded TFRecords of examples of any dataset: the fast path on large machines.

Each record holds the image file's bytes as they are on disk (no re-encoding,
so no JPEG loss) and the label as a single-channel PNG of training ids
(converted once from palette PNGs, `.mat` files or a dataset's stored ids by
its label map, e.g. Cityscapes' labelIds), plus the id and size. Shards are
written in the order of the examples, so reading them back in file order gives
the examples in the same order.
"""

import os

import tensorflow as tf

from ema_keras.data.decode import examples_dataset
from ema_keras.data.errors import SizeMismatchError
from ema_keras.data.image_io import encode_label_png, load_image, load_label


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def serialize_example(example):
    """One Example as a serialized tf.train.Example (reads and checks both files).

    The image's bytes are kept as they are, so it must be one the graph
    decoder reads (`strict`); the label is re-encoded as a PNG of ids.
    """
    height, width = load_image(example.image_path, strict=True).shape[:2]
    label = load_label(example.label_path, label_map=getattr(example, "label_map", None))
    if label.shape != (height, width):
        raise SizeMismatchError(
            example.label_path,
            f"label is {label.shape}, image {example.image_path} is {(height, width)}",
        )
    with open(example.image_path, "rb") as handle:
        image_bytes = handle.read()
    features = {
        "image/id": _bytes_feature(example.image_id.encode("utf-8")),
        "image/encoded": _bytes_feature(image_bytes),
        "label/encoded": _bytes_feature(encode_label_png(label)),
        "image/height": _int_feature(height),
        "image/width": _int_feature(width),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_tfrecords(examples, output_dir, num_shards, *, prefix="voc"):
    """Writes `examples` to `num_shards` files `<prefix>-00000-of-000NN.tfrecord`.

    Consecutive runs of examples go to consecutive shards (shard sizes differ
    by at most one). Returns the list of written paths; read them back with
    `read_tfrecords(os.path.join(output_dir, prefix + "-*.tfrecord"))`.
    """
    examples = list(examples)
    if not examples:
        raise ValueError("examples is empty: nothing to write")
    if not 1 <= num_shards <= len(examples):
        raise ValueError(
            f"num_shards must be in [1, {len(examples)}] (the number of examples), got {num_shards}"
        )
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for shard in range(num_shards):
        begin = shard * len(examples) // num_shards
        end = (shard + 1) * len(examples) // num_shards
        path = os.path.join(output_dir, f"{prefix}-{shard:05d}-of-{num_shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for example in examples[begin:end]:
                writer.write(serialize_example(example))
        paths.append(path)
    return paths


def read_tfrecords(pattern, *, input_context=None):
    """Decoded examples (dicts of image_id, image, label) from TFRecord files matching `pattern`.

    The result feeds `train_dataset` / `eval_dataset` as well, but passing the
    pattern itself to them lets them shard by file and shuffle the records
    before decoding.
    """
    return examples_dataset(os.fspath(pattern), input_context=input_context)
