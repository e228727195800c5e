"""The layers' keras.ops paths (taken on JAX and PyTorch), checked here on TensorFlow.

`tensorflow_ops.ENABLED` is switched off for a test, so the code that other
backends run is compared with the TensorFlow ops it replaces; tests/backends
runs it on JAX itself.
"""

import numpy as np
import pytest
import tensorflow as tf

from ema_keras.layers import EMALayer, SyncBatchNormalization, tensorflow_ops
from ema_keras.layers.resize import BilinearResize
from tests.layers.em_reference import reference_em, reference_update


@pytest.fixture
def keras_ops_paths(monkeypatch):
    monkeypatch.setattr(tensorflow_ops, "ENABLED", False)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("size", [(29, 23), (5, 4), (7, 7)])
def test_resize_equals_tensorflow_resize_bilinear(keras_ops_paths, align_corners, size):
    features = np.random.default_rng(0).normal(size=(2, 7, 6, 3)).astype("float32")
    reference = np.zeros((2,) + size + (1,), "float32")
    expected = tf.raw_ops.ResizeBilinear(
        images=features, size=size, align_corners=align_corners,
        half_pixel_centers=not align_corners,
    ).numpy()
    resized = BilinearResize(align_corners=align_corners)([features, reference])
    np.testing.assert_allclose(resized.numpy(), expected, atol=1e-5)


def test_em_layer_equals_reference_on_keras_ops_path(keras_ops_paths):
    inputs = np.random.default_rng(0).normal(size=(4, 6, 5, 16)).astype("float32")
    layer = EMALayer(num_bases=8, seed=3)
    layer.build(inputs.shape)
    initial_bases = layer.bases.numpy().copy()
    expected_output, per_image_bases = reference_em(inputs, initial_bases)
    output = layer(inputs, training=True)
    np.testing.assert_allclose(output.numpy(), expected_output, atol=1e-5)
    expected_bases = reference_update(initial_bases, per_image_bases)
    np.testing.assert_allclose(layer.bases.numpy(), expected_bases, atol=1e-5)


def test_synchronized_behaves_as_false_off_tensorflow_but_is_kept_in_config(keras_ops_paths):
    layer = SyncBatchNormalization(synchronized=True)
    assert not layer.synchronized
    assert layer.get_config()["synchronized"] is True


def test_synchronized_on_tensorflow():
    layer = SyncBatchNormalization(synchronized=True)
    assert layer.synchronized and layer.get_config()["synchronized"] is True
