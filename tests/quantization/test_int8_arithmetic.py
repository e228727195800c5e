"""The fake-quantized forward pass is LiteRT's int8 arithmetic, checked on a small conv stack.

The reference is an independent NumPy computation of what LiteRT's int8
kernels do with the same scales: int8 inputs and per-channel int8 kernels,
int32 biases at scale s_in * s_w, int32 accumulation, requantization to the
output's scale and zero point, a fused ReLU as a clamp. The scales come from
the QAT model's learnt ranges the way TensorFlow's fake-quant op (and the
TFLite converter) nudge them.
"""

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from ema_keras.export import export_tflite, tflite_interpreter
from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ema_keras.layers import ImageNormalization
from ema_keras.quantization import (
    ActivationQuantizer,
    QuantizedConv2D,
    QuantizedDepthwiseConv2D,
    activation_quantizers,
    quantization_aware_model,
)

SIZE = 8


def conv_stack():
    """Pixels -> normalise -> conv3x3-BN-ReLU -> depthwise3x3-BN -> conv1x1 (float, trained BN)."""
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    pixels = keras.Input((SIZE, SIZE, 3), name="image")
    x = ImageNormalization(name="normalize")(pixels)
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.Activation("relu", name="conv_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="depthwise_bn")(x)
    x = keras.layers.Conv2D(4, 1, name="project")(x)
    model = keras.Model(pixels, x)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            layer.beta.assign(rng.normal(0, 0.3, channels))
    return model


def pixels(count=4, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def qat_stack():
    model = quantization_aware_model(conv_stack())
    model(pixels(), training=True)  # the first training batch sets every range
    return model


def int8_parameters(quantizer):
    """(scale, int8 zero point) of a learnt range, nudged as TF's fake-quant op does."""
    low = min(float(quantizer.range_min.numpy()), 0.0)
    high = max(float(quantizer.range_max.numpy()), 0.0)
    scale = (high - low) / 255.0
    zero_point = int(np.clip(np.round(-low / scale), 0, 255))
    return scale, zero_point - 128


def quantize(real, scale, zero_point):
    return np.clip(np.round(real / scale) + zero_point, -128, 127).astype(np.int64)


def int8_kernel(kernel):
    """Per output channel (last axis), symmetric: q in [-127, 127], scale max|w| / 127."""
    scale = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0) / 127.0
    return np.round(kernel / scale).astype(np.int64), scale


def requantize(accumulator, multiplier, zero_point, relu=False):
    out = np.round(accumulator * multiplier) + zero_point
    return np.clip(out, zero_point if relu else -128, 127).astype(np.int64)


def int8_conv(q_x, zp_x, s_x, kernel, bias, s_out, zp_out, *, depthwise=False, relu=False):
    """LiteRT's CONV_2D / DEPTHWISE_CONV_2D on int8 (B, H, W, C), 'same' padding, stride 1."""
    kh, kw = kernel.shape[:2]
    flat_kernel = kernel.reshape(kh, kw, -1) if depthwise else kernel
    q_w, s_w = int8_kernel(flat_kernel)
    q_bias = np.round(bias / (s_x * s_w)).astype(np.int64)
    # Padding holds the real value 0, i.e. the zero point: (q - zp) is 0 there.
    centred = np.pad(q_x - zp_x, ((0, 0), (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
    height, width = q_x.shape[1:3]
    accumulator = np.zeros(q_x.shape[:3] + (q_w.shape[-1],), np.int64) + q_bias
    for i in range(kh):
        for j in range(kw):
            window = centred[:, i : i + height, j : j + width, :]
            if depthwise:
                accumulator += window * q_w[i, j]
            else:
                accumulator += np.einsum("bhwc,co->bhwo", window, q_w[i, j])
    return requantize(accumulator, s_x * s_w / s_out, zp_out, relu)


def numpy_int8_forward(model, images, first_input=None):
    """The stack's int8 computation in NumPy, dequantized: (B, H, W, 4) float.

    `first_input`: (int8 values, scale, zero point) of the first conv's input,
    if given; else the normalised images quantized with the learnt range.
    """
    quantizers = {q.name: q for q in activation_quantizers(model)}
    convs = {layer.name: layer for layer in model.layers if hasattr(layer, "kernel")}

    def params(name):
        return int8_parameters(quantizers[f"{name}_quantizer"])

    if first_input is None:
        s0, zp0 = params("normalize")
        normalized = (images - np.array(IMAGENET_MEAN)) * (1.0 / np.array(IMAGENET_STD))
        x = quantize(normalized, s0, zp0)
    else:
        x, s0, zp0 = first_input
        x = x.astype(np.int64)
    s1, zp1 = params("conv_relu")  # ReLU fused into the conv: one tensor
    conv = convs["conv"]
    x = int8_conv(x, zp0, s0, conv.kernel.numpy(), conv.bias.numpy(), s1, zp1, relu=True)
    s2, zp2 = params("depthwise")
    depthwise = convs["depthwise"]
    x = int8_conv(x, zp1, s1, depthwise.kernel.numpy(), depthwise.bias.numpy(), s2, zp2,
                  depthwise=True)  # fmt: skip
    s3, zp3 = params("project")
    project = convs["project"]
    x = int8_conv(x, zp2, s2, project.kernel.numpy(), project.bias.numpy(), s3, zp3)
    return (x - zp3) * s3, s3


def test_the_stack_is_folded_and_quantized_where_litert_requantizes(qat_stack):
    kinds = [type(layer) for layer in qat_stack.layers]
    assert keras.layers.BatchNormalization not in kinds
    assert kinds.count(QuantizedConv2D) == 2 and kinds.count(QuantizedDepthwiseConv2D) == 1
    # Normalised pixels, the conv + ReLU (one tensor), the depthwise conv, the output.
    names = [q.name for q in activation_quantizers(qat_stack)]
    assert names == [
        "normalize_quantizer", "conv_relu_quantizer", "depthwise_quantizer", "project_quantizer",
    ]  # fmt: skip
    assert all(isinstance(q, ActivationQuantizer) for q in activation_quantizers(qat_stack))


def test_fake_quant_forward_equals_numpy_int8_arithmetic(qat_stack):
    images = pixels(seed=2)
    fake_quant = np.asarray(qat_stack(images, training=False))
    reference, step = numpy_int8_forward(qat_stack, images)
    steps_apart = np.round(np.abs(fake_quant - reference) / step)
    # The int32 bias rounding and the order of float sums can move a value across
    # one rounding boundary; anything more would be a different arithmetic.
    assert steps_apart.max() <= 1
    assert np.mean(steps_apart == 0) >= 0.97


def test_the_int8_file_computes_the_same_int8_arithmetic(qat_stack, tmp_path):
    path = export_tflite(
        qat_stack, tmp_path / "stack.tflite", quantization="int8", image_size=(SIZE, SIZE),
        representative_images=list(pixels(seed=3).astype("uint8")),
    )  # fmt: skip
    runner = tflite_interpreter(path).get_signature_runner()
    output = runner.get_output_details()["logits"]
    scale, zero_point = output["quantization"]
    s3, zp3 = int8_parameters(activation_quantizers(qat_stack)[-1])
    # The file's output tensor has the learnt range's scale and zero point.
    assert scale == pytest.approx(s3, rel=1e-5) and zero_point == zp3
    # The file also rounds the normalisation's subtraction (calibrated: the QAT model keeps
    # it in float), so its first conv's input may sit a step off the model's. From that
    # int8 input on, the file's convolutions must be the NumPy int8 arithmetic.
    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    operators = interpreter._get_ops_details()
    first_conv = next(op for op in operators if op["op_name"] == "CONV_2D")
    conv_input = interpreter.get_tensor_details()[first_conv["inputs"][0]]
    s0, zp0 = int8_parameters(activation_quantizers(qat_stack)[0])
    assert conv_input["quantization"] == (pytest.approx(s0, rel=1e-5), zp0)  # learnt, too
    image_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    for image in pixels(seed=4).astype("uint8"):
        interpreter.set_tensor(image_index, image[None])
        interpreter.invoke()
        file_input = interpreter.get_tensor(conv_input["index"])
        file_output = interpreter.get_tensor(output_index).astype(np.float32)
        reference, step = numpy_int8_forward(
            qat_stack, None, (file_input, *conv_input["quantization"])
        )
        steps_apart = np.round(np.abs((file_output - zero_point) * scale - reference) / step)
        assert steps_apart.max() <= 1
        assert np.mean(steps_apart == 0) >= 0.97
