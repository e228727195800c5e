"""Convolutions whose kernels are fake-quantized per output channel, as LiteRT stores them.

LiteRT's int8 spec stores a convolution's kernel per output channel,
symmetric: scale_c = max|w_c| / 127, zero point 0, values -127..127. These
layers round their kernel that way on every call (the range comes from the
kernel itself, so it follows the weights as they train) and convolve with the
rounded kernel; gradients pass straight through to the float kernel. The
rounding is `keras.quantizers.fake_quant_with_min_max_vars` with
`narrow_range=True` (255 levels, so [-m, m] puts 0 on a level exactly);
on TensorFlow it is `tf.quantization.fake_quant_with_min_max_vars_per_channel`.

They are `Conv2D` and `DepthwiseConv2D` otherwise (same arguments, weights
and names), built from the BatchNorm-folded copy of a trained model, so each
kernel and bias already carry their BatchNorm.
"""

import keras
from keras import ops

from ema_keras.serialization import PACKAGE

_SMALLEST_RANGE = 1e-8  # an all-zero channel: any range rounds it to zero


def quantize_kernel_per_channel(kernel):
    """`kernel` (..., channels) rounded per last-axis channel to max|w| / 127 steps."""
    kernel = ops.cast(kernel, "float32")
    reduce_axes = tuple(range(len(kernel.shape) - 1))
    bound = ops.maximum(ops.max(ops.abs(kernel), axis=reduce_axes), _SMALLEST_RANGE)
    bound = ops.stop_gradient(bound)
    return keras.quantizers.fake_quant_with_min_max_vars(
        kernel, -bound, bound, num_bits=8, narrow_range=True, axis=-1
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantizedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` with its kernel fake-quantized per output channel (int8)."""

    def convolution_op(self, inputs, kernel):
        kernel = ops.cast(quantize_kernel_per_channel(kernel), self.compute_dtype)
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantizedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with its kernel fake-quantized per output channel.

    The kernel is (kh, kw, in, multiplier); output channel i * multiplier + m,
    which is how LiteRT lays it out (1, kh, kw, in * multiplier).
    """

    def call(self, inputs):
        kernel_shape = tuple(self.kernel.shape)
        flat = ops.reshape(self.kernel, kernel_shape[:2] + (-1,))
        kernel = ops.reshape(quantize_kernel_per_channel(flat), kernel_shape)
        outputs = ops.depthwise_conv(
            inputs,
            ops.cast(kernel, self.compute_dtype),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)  # channels_last (the only one folded)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


def quantized_convolution(conv):
    """A fresh, unbuilt quantized twin of a Conv2D / DepthwiseConv2D (same config), or None."""
    if getattr(conv, "data_format", None) != "channels_last":
        return None
    # DepthwiseConv2D first: it is not a Conv2D, but a subclass of either keeps its config.
    for kind, quantized in (
        (keras.layers.DepthwiseConv2D, QuantizedDepthwiseConv2D),
        (keras.layers.Conv2D, QuantizedConv2D),
    ):
        if isinstance(conv, kind):
            return quantized.from_config(conv.get_config())
    return None
