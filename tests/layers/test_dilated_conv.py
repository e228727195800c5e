"""DilatedConv2D: Keras' Conv2D outputs, one dilated Conv2D op at inference on TensorFlow."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.inference.folding import fold_batch_norm
from ema_keras.layers import DilatedConv2D, tensorflow_ops
from ema_keras.models import DilatedResNet, EMANetBackbone, EMANetImageSegmenter
from tests.layer_testing import check_inference_gradients_equal, traced_op_types


def _pair(dilation_rate, padding, use_bias, activation, kernel_size=3):
    """A Conv2D and a DilatedConv2D with the same config and weights."""
    arguments = dict(
        filters=5, kernel_size=kernel_size, padding=padding, dilation_rate=dilation_rate,
        use_bias=use_bias, activation=activation, bias_initializer="random_normal",
    )  # fmt: skip
    reference, dilated = keras.layers.Conv2D(**arguments), DilatedConv2D(**arguments)
    x = tf.random.stateless_normal((2, 19, 17, 4), seed=(0, 2))
    reference(x)
    dilated(x)
    dilated.set_weights(reference.get_weights())
    return reference, dilated, x


@pytest.fixture
def native_dilation(monkeypatch):
    """The layer as on a CPU where TensorFlow has the dilated op's gradient (oneDNN).

    Tracing and the forward pass need no gradient, so these checks hold on
    every machine; the gradient itself is checked as this machine has it.
    """
    monkeypatch.setattr(tensorflow_ops, "dilated_conv2d_has_gradient", lambda: True)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    "dilation_rate, padding, use_bias, activation, kernel_size",
    [
        (2, "same", False, None, 3),
        (4, "same", True, "relu", 3),
        ((2, 3), "valid", True, None, 3),
        # An even kernel: "same" pads one more pixel after than before, as TensorFlow does.
        ((3, 2), "same", True, None, 4),
    ],
)
def test_outputs_equal_conv2d_in_inference_and_training(
    dilation_rate, padding, use_bias, activation, kernel_size, native, monkeypatch
):
    monkeypatch.setattr(tensorflow_ops, "dilated_conv2d_has_gradient", lambda: native)
    reference, dilated, x = _pair(dilation_rate, padding, use_bias, activation, kernel_size)
    expected = reference(x).numpy()
    for training in (False, None, True):
        np.testing.assert_allclose(dilated(x, training=training).numpy(), expected, atol=1e-5)


def test_inference_is_one_conv_op_and_training_keeps_keras_lowering(native_dilation):
    _, dilated, x = _pair(2, "same", True, None)
    inference = traced_op_types(dilated, x.shape, training=False)
    assert "Conv2D" in inference and "SpaceToBatchND" not in inference
    assert "SpaceToBatchND" in traced_op_types(dilated, x.shape, training=True)


def test_undilated_and_strided_convs_keep_keras_lowering(native_dilation):
    assert not DilatedConv2D(4, 3, dilation_rate=1)._runs_native_dilation()
    assert not DilatedConv2D(4, 3, strides=2)._runs_native_dilation()
    assert DilatedConv2D(4, 3, dilation_rate=2)._runs_native_dilation()


def test_gradients_equal_conv2d_in_inference_mode():
    # As this machine's TensorFlow runs it: the native op where it has the
    # gradient, Keras' lowering where it does not (an AVX2-only CPU).
    reference, dilated, x = _pair(2, "same", True, None)
    native = "SpaceToBatchND" not in traced_op_types(dilated, x.shape, training=False)
    assert native == tensorflow_ops.dilated_conv2d_has_gradient()
    check_inference_gradients_equal(dilated, reference, x, rtol=1e-4, atol=1e-3)


def test_without_the_dilated_gradient_inference_keeps_keras_lowering(monkeypatch):
    monkeypatch.setattr(tensorflow_ops, "dilated_conv2d_has_gradient", lambda: False)
    _, dilated, x = _pair(2, "same", True, None)
    assert not dilated._runs_native_dilation()
    assert "SpaceToBatchND" in traced_op_types(dilated, x.shape, training=False)


def test_without_onednn_keras_lowering_keeps_gradients():
    # TensorFlow's Eigen CPU kernels have no gradient for a dilated Conv2D op:
    # with TF_ENABLE_ONEDNN_OPTS=0 the layer must keep Keras' lowering.
    program = textwrap.dedent(
        """
        import tensorflow as tf
        from ema_keras.layers import DilatedConv2D, tensorflow_ops
        conv = DilatedConv2D(3, 3, padding="same", dilation_rate=2)
        x = tf.random.stateless_normal((1, 9, 9, 2), seed=(0, 1))
        assert not conv._runs_native_dilation()
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(conv(x, training=False))
        gradient = tape.gradient(loss, x)
        print("gradient", gradient.shape)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gradient (1, 9, 9, 2)" in result.stdout


def test_serialization_round_trip(tmp_path):
    _, dilated, x = _pair(4, "same", True, "relu")
    inputs = keras.Input((19, 17, 4))
    model = keras.Model(inputs, dilated(inputs))
    path = tmp_path / "dilated.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[-1], DilatedConv2D)
    assert loaded.layers[-1].dilation_rate == (4, 4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_emanet_dilated_blocks_use_it_and_trace_no_space_to_batch(native_dilation):
    keras.utils.set_random_seed(0)
    encoder = DilatedResNet(block_counts=[1, 1, 2, 2], width=8, output_stride=8)
    model = EMANetImageSegmenter(
        backbone=EMANetBackbone(
            image_encoder=encoder, head_channels=16, classifier_channels=8, ema_num_bases=4
        ),
        num_classes=3,
    )
    backbone_layers = model.image_encoder.layers
    dilated = [layer for layer in backbone_layers if isinstance(layer, DilatedConv2D)]
    plain = [layer for layer in backbone_layers if type(layer) is keras.layers.Conv2D]
    assert dilated and all(max(layer.dilation_rate) > 1 for layer in dilated)
    assert all(max(layer.dilation_rate) == 1 for layer in plain)
    x = tf.random.stateless_uniform((1, 33, 33, 3), seed=(1, 2), maxval=255.0)
    for built in (model, fold_batch_norm(model)):
        assert "SpaceToBatchND" not in traced_op_types(built, x.shape, training=False)
    folded = fold_batch_norm(model)
    assert sum(isinstance(layer, DilatedConv2D) for layer in folded.layers) == len(dilated)
