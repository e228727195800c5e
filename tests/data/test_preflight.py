"""The check before a run: every bad file of any source is named before a step, once."""

import io
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
from PIL import Image

from ema_keras.data import image_io, preflight, tfrecords, validate, voc
from ema_keras.data.errors import PreflightError
from tests.data.conftest import BAD_FILES, spoil, write_sbd, write_voc

BAD_ID = "2007_000002"


def _check(source, **kwargs):
    return preflight.preflight_check(source, num_classes=21, **kwargs)


def _train_examples(voc_root):
    return voc.read_voc_split(voc_root, "train", check_files=False)


def _assert_names(error, *paths):
    message = str(error.value)
    assert "\n" not in message
    assert error.value.paths == list(paths)
    for path in paths:
        assert path in message


def test_clean_source_passes_with_its_largest_image(voc_fixture):
    voc_root, labels = voc_fixture
    result = _check(voc.read_voc_split(voc_root, "val"), what="validation data")
    sizes = [labels[i].shape for i in ("2007_000004", "2007_000005")]
    assert result.num_examples == 2 and not result.from_cache
    assert preflight.required_pad_size(result) == (
        max(h for h, _ in sizes),
        max(w for _, w in sizes),
    )


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_each_bad_file_is_named_before_training(voc_fixture, kind):
    path = spoil(voc_fixture[0], BAD_ID, kind)
    with pytest.raises(PreflightError, match="of the training data") as error:
        _check(_train_examples(voc_fixture[0]), what="training data")
    _assert_names(error, path)
    # The folder validator refuses exactly the same file.
    assert [p.path for p in validate.validate_dataset(voc_fixture[0], splits=("train",))] == [path]


def test_validator_and_preflight_name_the_same_files(tmp_path):
    ids = [f"2008_{i:06d}" for i in range(len(BAD_FILES) + 2)]
    voc_root, _ = write_voc(str(tmp_path), {"train": ids, "val": ids[:1]}, size=(20, 24))
    spoiled = {spoil(voc_root, image_id, kind) for image_id, kind in zip(ids, sorted(BAD_FILES))}
    named_by_validator = {p.path for p in validate.validate_dataset(voc_root, splits=("train",))}
    with pytest.raises(PreflightError) as error:
        _check(_train_examples(voc_root), num_workers=2)
    assert set(error.value.paths) == named_by_validator == spoiled
    message = str(error.value)
    assert message.startswith(f"{len(error.value.problems)} problem(s) in {len(spoiled)} file(s)")
    assert f"and {len(error.value.problems) - 3} more" in message and "\n" not in message


def test_sbd_mat_labels_corrupt_or_with_wrong_ids(tmp_path):
    sbd_root, labels = write_sbd(str(tmp_path), {"train": ["m1", "m2", "m3"]}, size=(16, 20))
    cls = os.path.join(sbd_root, "dataset", "cls")
    with open(os.path.join(cls, "m1.mat"), "r+b") as handle:
        handle.truncate(200)
    label = labels["m3"].copy()
    label[0, 0] = 30
    scipy.io.savemat(os.path.join(cls, "m3.mat"), {"GTcls": {"Segmentation": label}})
    with pytest.raises(PreflightError) as error:
        _check(voc.read_sbd_split(sbd_root, "train"))
    _assert_names(error, os.path.join(cls, "m1.mat"), os.path.join(cls, "m3.mat"))
    assert "[30]" in str(error.value)


def _record(image_id, image_bytes, label_bytes):
    feature = {
        "image/id": tfrecords._bytes_feature(image_id.encode()),
        "image/encoded": tfrecords._bytes_feature(image_bytes),
        "label/encoded": tfrecords._bytes_feature(label_bytes),
        "image/height": tfrecords._int_feature(0),
        "image/width": tfrecords._int_feature(0),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_tfrecord_records_are_decoded_and_checked(voc_fixture, tmp_path):
    voc_root, labels = voc_fixture
    examples = voc.read_voc_split(voc_root, "train")
    paths = tfrecords.write_tfrecords(examples, tmp_path / "records", num_shards=2)
    pattern = str(tmp_path / "records" / "voc-*.tfrecord")
    assert _check(pattern).num_examples == 3

    # A shard of our own: a JPEG cut short, and a label with 30 in a corner.
    with open(examples[0].image_path, "rb") as handle:
        jpeg = handle.read()
    label = labels[examples[1].image_id].copy()
    label[-1, 0] = 30
    with open(examples[1].image_path, "rb") as handle:
        good_jpeg = handle.read()
    bad_shard = str(tmp_path / "records" / "voc-bad.tfrecord")
    with tf.io.TFRecordWriter(bad_shard) as writer:
        label_png = image_io.encode_label_png(labels[examples[0].image_id])
        writer.write(_record("cut", jpeg[: len(jpeg) // 2], label_png))
        writer.write(_record("thirty", good_jpeg, image_io.encode_label_png(label)))
    with pytest.raises(PreflightError) as error:
        _check(pattern)
    _assert_names(error, f"{bad_shard} example cut image", f"{bad_shard} example thirty label")

    # A shard cut short (an interrupted copy) is named too.
    os.remove(bad_shard)
    with open(paths[1], "r+b") as handle:
        handle.truncate(os.path.getsize(paths[1]) - 100)
    with pytest.raises(PreflightError) as error:
        _check(pattern)
    _assert_names(error, paths[1])


def test_dataset_of_dicts_is_iterated_once_and_checked(voc_fixture, tmp_path):
    voc_root, labels = voc_fixture
    examples = voc.read_voc_split(voc_root, "train")
    elements = [
        {
            "image_id": e.image_id,
            "image": image_io.load_image(e.image_path),
            "label": labels[e.image_id][..., None],  # TFDS gives (H, W, 1)
        }
        for e in examples
    ]
    elements[2]["label"] = elements[2]["label"].copy()
    elements[2]["label"][0, -1] = 30
    signature = {
        "image_id": tf.TensorSpec([], tf.string),
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "label": tf.TensorSpec([None, None, 1], tf.uint8),
    }
    calls = []

    def generate():
        calls.append(1)
        yield from elements

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    with pytest.raises(PreflightError) as error:
        _check(dataset, cache_dir=str(tmp_path / "run"))
    _assert_names(error, f"dataset element 2 ({examples[2].image_id}) label")
    assert len(calls) == 1 and not os.path.exists(tmp_path / "run")  # nothing to fingerprint

    # Encoded bytes, as tfds.load(..., decoders=SkipDecoding()) gives them.
    with open(examples[0].image_path, "rb") as handle:
        jpeg = handle.read()
    encoded = tf.data.Dataset.from_tensors(
        {"image": jpeg[:-40], "label": image_io.encode_label_png(labels[examples[0].image_id])}
    )
    with pytest.raises(PreflightError, match="dataset element 0 image: "):
        _check(encoded)


def test_a_pass_is_remembered_until_a_file_changes(voc_fixture, tmp_path, monkeypatch):
    voc_root, _ = voc_fixture
    examples = voc.read_voc_split(voc_root, "val")
    decoded = []
    original_decode = image_io._decode
    monkeypatch.setattr(image_io, "_decode", lambda *a: decoded.append(1) or original_decode(*a))
    cache_dir = str(tmp_path / "run")

    first = _check(examples, cache_dir=cache_dir)
    assert len(decoded) == 4 and not first.from_cache  # two images, two labels
    second = _check(examples, cache_dir=cache_dir)
    assert len(decoded) == 4 and second.from_cache
    assert (second.num_examples, second.max_height, second.max_width) == (
        first.num_examples,
        first.max_height,
        first.max_width,
    )
    assert os.listdir(cache_dir) == [preflight.CACHE_FILE]

    # Another num_classes, or a touched file: checked again.
    preflight.preflight_check(examples, num_classes=30, cache_dir=cache_dir)
    assert len(decoded) == 8
    stat = os.stat(examples[1].label_path)
    os.utime(examples[1].label_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    assert not _check(examples, cache_dir=cache_dir).from_cache
    assert len(decoded) == 12

    # A failure is never remembered: a rewritten bad file fails every time.
    spoil(voc_root, examples[0].image_id, "truncated_jpeg")
    for _ in range(2):
        with pytest.raises(PreflightError):
            _check(examples, cache_dir=cache_dir)
    assert len(decoded) == 12 + 2 * 4


def test_empty_sources_are_refused(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        _check([])
    with tf.io.TFRecordWriter(str(tmp_path / "empty.tfrecord")):
        pass
    with pytest.raises(PreflightError, match="no example"):
        _check(str(tmp_path / "*.tfrecord"))


def test_jpeg_with_bytes_after_its_end_passes_everywhere(voc_fixture):
    """Padding after a complete JPEG is no truncation: no false alarm, in numpy or the graph."""
    from ema_keras.data import decode

    voc_root, _ = voc_fixture
    example = _train_examples(voc_root)[0]
    with open(example.image_path, "ab") as handle:
        handle.write(b"\x00" * 64)
    assert _check([example]).num_examples == 1
    image = next(iter(decode.examples_dataset([example], num_classes=21)))["image"]
    np.testing.assert_array_equal(image, image_io.load_image(example.image_path))


def test_grayscale_and_cmyk_jpegs_pass(voc_fixture):
    voc_root, _ = voc_fixture
    examples = _train_examples(voc_root)
    for example, mode in zip(examples, ("L", "CMYK")):
        rgb = Image.open(example.image_path)
        buffer = io.BytesIO()
        rgb.convert(mode).save(buffer, format="JPEG", quality=95)
        with open(example.image_path, "wb") as handle:
            handle.write(buffer.getvalue())
    assert _check(examples).num_examples == 3


def test_eval_recipe_refuses_a_bad_label_before_loading_the_model(voc_fixture, tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = spoil(voc_fixture[0], "2007_000004", "label_value_30_in_a_corner")
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(repo, "recipes", "eval_voc.py"),
            f"--model={tmp_path / 'no_such_model.keras'}",
            f"--data_dir={voc_fixture[0]}",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=repo),
        timeout=300,
    )
    assert result.returncode == 1
    assert f"eval_voc.py: 1 problem(s) in 1 file(s) of the val split: {path}" in result.stderr
    assert "[30]" in result.stderr and "no_such_model" not in result.stderr
    assert "Traceback" not in result.stderr
