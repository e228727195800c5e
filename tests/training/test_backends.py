"""The per-backend decisions of `ema_keras.training.backends`, and `ArrayCheckpoint`.

Both run in the TensorFlow test session: `check_settings` (which runs
`backends.check_backend`) takes the backend as an argument, and
`ArrayCheckpoint` (the checkpoint of JAX and PyTorch runs) works on any
backend. The runs themselves on JAX and torch are in tests/backends/.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.data.voc import IGNORE_LABEL
from ema_keras.metrics import SegmentationMeanIoU
from ema_keras.training import SettingsError, backends, get_recipe
from ema_keras.training.checkpointing import ArrayCheckpoint
from ema_keras.training.config import check_settings


@pytest.mark.parametrize(
    "backend, settings, flag",
    [
        ("jax", dict(strategy="multi_worker"), "--strategy multi_worker"),
        ("jax", dict(strategy="tpu"), "--strategy tpu"),
        ("torch", dict(strategy="mirrored"), "--strategy mirrored"),
        ("torch", dict(strategy="one_device", jit_compile=True), "--jit_compile"),
        ("jax", dict(strategy="one_device", tpu_address="grpc://x"), "--tpu_address"),
        ("numpy", dict(strategy="one_device"), "KERAS_BACKEND=numpy"),
    ],
)
def test_what_a_backend_cannot_do_is_refused_naming_the_flag(backend, settings, flag):
    with pytest.raises(SettingsError, match=flag):
        check_settings(get_recipe("demo", **settings), backend=backend)
    with pytest.raises(SettingsError, match=flag):  # also when the execution is made
        backends.make_execution(get_recipe("demo", **settings), backend=backend)


@pytest.mark.parametrize(
    "backend, strategy",
    [("tensorflow", "multi_worker"), ("jax", "mirrored"), ("jax", "one_device"),
     ("torch", "one_device")],
)
def test_what_a_backend_can_do_passes(backend, strategy):
    config = get_recipe("demo", strategy=strategy, jit_compile=backend == "jax")
    assert check_settings(config, backend=backend) is config
    assert backends.check_backend(config, backend=backend) is config


def test_the_settings_have_one_check():
    assert not hasattr(backends, "check_settings")  # config.check_settings runs check_backend


def _tiny_model():
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.BatchNormalization()(keras.layers.Conv2D(2, 1)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    return model


def _values(model):
    return [np.array(v.numpy()) for v in model.variables + model.optimizer.variables]


def test_array_checkpoint_restores_every_model_and_optimizer_variable(tmp_path):
    rng = np.random.default_rng(0)
    images, targets = rng.normal(size=(4, 4, 4, 3)), rng.normal(size=(4, 4, 4, 2))
    model = _tiny_model()
    checkpoint = ArrayCheckpoint(model, str(tmp_path), max_to_keep=2)
    assert checkpoint.restore_latest() == 0 and checkpoint.latest is None
    for _ in range(3):
        model.fit(images, targets, batch_size=4, epochs=1, verbose=0)
        checkpoint.save()
    saved = _values(model)
    # A kill in the middle of the next save leaves a partial file, not a checkpoint.
    with open(os.path.join(tmp_path, "ckpt-4.npz.partial"), "wb") as file:
        file.write(b"half a file")
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint.json", "ckpt-2.npz", "ckpt-3.npz", "ckpt-4.npz.partial"
    ]

    fresh = _tiny_model()
    assert ArrayCheckpoint(fresh, str(tmp_path)).restore_latest() == 3
    assert any(np.abs(v).max() > 0 for v in _values(fresh)[-2:])  # momentum restored
    for expected, actual in zip(saved, _values(fresh)):
        np.testing.assert_array_equal(actual, expected)


def test_array_checkpoint_of_another_model_is_refused(tmp_path):
    model = _tiny_model()
    checkpoint = ArrayCheckpoint(model, str(tmp_path))
    checkpoint.restore_latest()
    checkpoint.save()
    inputs = keras.Input((4, 4, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(5, 1)(inputs))
    other.compile(optimizer="sgd", loss="mse")
    with pytest.raises(SettingsError, match="another model's variables"):
        ArrayCheckpoint(other, str(tmp_path)).restore_latest()
    with open(os.path.join(tmp_path, "checkpoint.json")) as file:
        assert json.load(file) == {"checkpoints": ["ckpt-0.npz"]}


def test_whole_batches_fill_the_last_batch_without_changing_the_miou():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(5, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(5, 8, 8)).astype("int32")
    labels[0, :2] = IGNORE_LABEL
    logits = rng.normal(size=(5, 8, 8, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    batches = list(backends.whole_batches(dataset, 2))
    assert [len(batch[0]) for batch in batches] == [2, 2, 2]
    last_images, last_labels = batches[-1]
    np.testing.assert_array_equal(last_images[1], 0.0)
    np.testing.assert_array_equal(last_labels[1], IGNORE_LABEL)

    expected, padded = SegmentationMeanIoU(3), SegmentationMeanIoU(3)
    expected.update_state(labels, logits)
    padded.update_state(
        np.concatenate([b[1] for b in batches]),
        np.concatenate([logits, rng.normal(size=(1, 8, 8, 3)).astype("float32")]),
    )
    assert float(padded.result()) == float(expected.result())
    assert list(backends.whole_batches(dataset, 1))[-1][0].shape[0] == 1  # one device: as is
