"""A bad file that slips past the check (changed after it) still stops the graph, named."""

import os

import numpy as np
import pytest
import tensorflow as tf

from ema_keras.data import decode, file_formats, graph_checks, image_io, pipeline, tfrecords, voc
from tests.data.conftest import BAD_FILES, spoil

BAD_ID = "2007_000002"
# The graph sees colours, not palette indices: a foreign palette can only be told by the check.
GRAPH_KINDS = sorted(set(BAD_FILES) - {"foreign_palette"})


def _first_batch(dataset):
    return next(iter(dataset))


@pytest.mark.parametrize("kind", GRAPH_KINDS)
def test_each_bad_file_stops_the_training_pipeline_naming_it(voc_fixture, kind):
    examples = voc.read_voc_split(voc_fixture[0], "train")
    path = spoil(voc_fixture[0], BAD_ID, kind)
    bad = [e for e in examples if e.image_id == BAD_ID]
    with pytest.raises(tf.errors.OpError, match=os.path.basename(path)):
        _first_batch(decode.examples_dataset(bad, num_classes=21))
    dataset = pipeline.train_dataset(examples, batch_size=3, crop_size=16, seed=0, num_classes=21)
    with pytest.raises(tf.errors.OpError, match=os.path.basename(path)):
        _first_batch(dataset)


def test_label_id_outside_the_crop_still_fails_naming_the_file(voc_fixture):
    voc_root, labels = voc_fixture
    example = voc.read_voc_split(voc_root, "train")[0]
    spoil(voc_root, example.image_id, "label_value_30_in_a_corner")
    options = dict(batch_size=1, crop_size=8, scales=(1.0,), flip=False, seed=0)
    # Without the check, the crops miss the corner: the pipeline would train on.
    unchecked = pipeline.train_dataset([example], num_classes=None, **options)
    crops = np.stack([label for _, label in unchecked.take(3).as_numpy_iterator()])
    assert 30 not in crops
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"num_classes=21.*2007_000001\.png"):
        _first_batch(pipeline.train_dataset([example], **options, num_classes=21))


def test_eval_dataset_refuses_ids_beyond_num_classes(voc_fixture):
    voc_root, _ = voc_fixture
    examples = voc.read_voc_split(voc_root, "val")
    path = spoil(voc_root, examples[1].image_id, "label_value_30_in_a_corner")
    with pytest.raises(tf.errors.InvalidArgumentError, match=os.path.basename(path)):
        list(pipeline.eval_dataset(examples, pad_to=(64, 64), num_classes=21))
    # 30 is a class when there are 31.
    assert len(list(pipeline.eval_dataset(examples, num_classes=31))) == 2


def test_evaluate_refuses_ids_beyond_num_classes(voc_fixture):
    import keras

    from ema_keras.inference.evaluation import evaluate

    voc_root, _ = voc_fixture
    examples = voc.read_voc_split(voc_root, "val")
    path = spoil(voc_root, examples[0].image_id, "label_value_30_in_a_corner")
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(21, 1)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=os.path.basename(path)):
        evaluate(model, examples, num_classes=21)


def test_tfrecord_errors_name_the_shard_and_the_id(voc_fixture, tmp_path):
    voc_root, labels = voc_fixture
    examples = voc.read_voc_split(voc_root, "train")
    label = labels[examples[1].image_id].copy()
    label[-1, -1] = 30
    image_io.save_palette_png(label, examples[1].label_path)
    paths = tfrecords.write_tfrecords(examples, tmp_path / "records", num_shards=3)
    pattern = str(tmp_path / "records" / "*.tfrecord")
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=f"{paths[1]} example {examples[1].image_id}"
    ):
        list(decode.examples_dataset(pattern, num_classes=21))
    assert len(list(decode.examples_dataset(pattern))) == 3  # no num_classes, no check


def test_decoded_label_with_wide_ids_is_checked_before_the_uint8_cast():
    label = np.zeros((4, 5, 1), np.int64)
    label[3, 4] = 256 + 3  # would pass as 3 once cast to uint8
    dataset = tf.data.Dataset.from_tensors(
        {"image_id": "wide", "image": np.zeros((4, 5, 3), np.uint8), "label": label}
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="wide.*largest.*259"):
        list(decode.examples_dataset(dataset, num_classes=21))


def _jpeg_bytes(voc_root):
    with open(os.path.join(voc_root, "JPEGImages", "2007_000001.jpg"), "rb") as handle:
        return handle.read()


def test_end_of_file_rules_are_the_same_in_numpy_and_in_the_graph(voc_fixture):
    jpeg = _jpeg_bytes(voc_fixture[0])
    png = image_io.encode_label_png(np.zeros((5, 6), np.uint8))
    cases = {
        "jpeg": (jpeg, True),
        "jpeg with zero padding": (jpeg + b"\0" * 10, True),
        "jpeg with a second image after it": (jpeg + jpeg[:-2] + b"\0" + jpeg[-2:], True),
        "jpeg cut in its scan": (jpeg[:-20], False),
        "jpeg cut after its header": (jpeg[:300], False),
        "jpeg with a scan marker after its end": (jpeg + b"\xff\xda\x00", False),
        "png": (png, True),
        "png with bytes after it": (png + b"trailing", True),
        "png without IEND": (png[:-12], False),
        "png cut short": (png[: len(png) // 2], False),
    }
    for name, (data, complete) in cases.items():
        if data.startswith(file_formats.PNG_SIGNATURE):
            numpy_verdict = file_formats.png_is_complete(data)
            graph_verdict = graph_checks.png_is_complete(tf.constant(data))
        else:
            numpy_verdict = file_formats.jpeg_is_complete(data)
            graph_verdict = graph_checks.jpeg_is_complete(tf.constant(data))
        assert numpy_verdict == bool(graph_verdict) == complete, name
