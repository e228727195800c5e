"""The EMA unit as LiteRT's int8 kernels compute it, for quantization-aware training.

`EMAUnit` runs 1x1 conv, the EM iterations (batch-matmul, softmax,
batch-matmul, L2-normalisation), the reconstruction (batch-matmul), ReLU,
1x1 conv + BatchNorm, the residual add and ReLU. In a full-integer TFLite
file every one of those tensors is int8 with its own scale, so this layer
rounds each of them where the file does:

- the input projection's output, the E-step's logits, the M-step's sums,
  the reconstruction, its ReLU and the output conv's output: per tensor,
  moving-average ranges (`ActivationQuantizer`);
- the responsibilities (softmax) and the bases (L2-normalised) at the
  fixed ranges LiteRT's int8 kernels give them: SOFTMAX outputs scale 1/256
  (zero point -128), L2_NORMALIZATION scale 1/128 (zero point 0);
- both 1x1 kernels per output channel and the shared bases per tensor,
  symmetric (`quantize_kernel_per_channel`).

The output BatchNorm is folded into the output conv (its weights are
`output_kernel` and `output_bias`); the shared bases are frozen (as the
folded BatchNorm statistics are: a QAT fine-tune learns weights and ranges,
not statistics). The unit's output is quantized by whatever reads it.
With `quantize_attention=False` the EM iterations and reconstruction run
in float (for measuring where the int8 error enters).
"""

import keras
from keras import ops

from ema_keras.layers import tensorflow_ops
from ema_keras.quantization.activation_quantizer import ActivationQuantizer, fake_quantize
from ema_keras.quantization.quantized_conv import quantize_kernel_per_channel
from ema_keras.serialization import PACKAGE

# The fixed output ranges of LiteRT's int8 SOFTMAX and L2_NORMALIZATION kernels.
SOFTMAX_RANGE = (0.0, 255.0 / 256.0)
L2_NORMALIZATION_RANGE = (-1.0, 127.0 / 128.0)


def _unit_bases(bases, epsilon):
    # As `EMALayer`: TFLite's L2_NORMALIZATION on TensorFlow, the same formula elsewhere.
    if tensorflow_ops.ENABLED:
        return tensorflow_ops.l2_normalize(bases, axis=-1, epsilon=epsilon**2)
    squared_norm = ops.sum(ops.square(bases), axis=-1, keepdims=True)
    return bases * ops.rsqrt(ops.maximum(squared_norm, epsilon**2))


def _conv1x1(inputs, kernel, bias):
    return ops.conv(inputs, quantize_kernel_per_channel(kernel), padding="valid") + bias


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantizedEMAUnit(keras.layers.Layer):
    """An `EMAUnit` (BatchNorm folded, bases frozen) with every int8 tensor fake-quantized.

    Args:
        num_bases, num_iterations, epsilon: as `EMAUnit`.
        range_momentum: momentum of the activation ranges (`ActivationQuantizer`).
        quantize_attention: False keeps the EM iterations and reconstruction in float.
    """

    def __init__(
        self,
        num_bases=64,
        num_iterations=3,
        epsilon=1e-6,
        range_momentum=0.99,
        quantize_attention=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_bases = int(num_bases)
        self.num_iterations = int(num_iterations)
        self.epsilon = float(epsilon)
        self.range_momentum = float(range_momentum)
        self.quantize_attention = bool(quantize_attention)

        def quantizer(name):
            return ActivationQuantizer(self.range_momentum, name=name)

        self.projection_quantizer = quantizer("projection_quantizer")
        self.logits_quantizers = [
            quantizer(f"logits_quantizer_{t}") for t in range(self.num_iterations)
        ]
        self.sums_quantizers = [
            quantizer(f"sums_quantizer_{t}") for t in range(self.num_iterations)
        ]
        self.reconstruction_quantizer = quantizer("reconstruction_quantizer")
        self.relu_quantizer = quantizer("relu_quantizer")
        self.output_quantizer = quantizer("output_quantizer")

    @property
    def quantizers(self):
        """The unit's `ActivationQuantizer`s, in the order they are applied."""
        return [
            self.projection_quantizer,
            *(q for pair in zip(self.logits_quantizers, self.sums_quantizers) for q in pair),
            self.reconstruction_quantizer,
            self.relu_quantizer,
            self.output_quantizer,
        ]

    def build(self, input_shape):
        channels = input_shape[-1]

        def weight(name, shape, trainable):
            return self.add_weight(name=name, shape=shape, initializer="zeros",
                                   trainable=trainable)  # fmt: skip

        self.input_kernel = weight("input_kernel", (1, 1, channels, channels), False)
        self.input_bias = weight("input_bias", (channels,), False)
        self.bases = weight("bases", (channels, self.num_bases), False)
        self.output_kernel = weight("output_kernel", (1, 1, channels, channels), True)
        self.output_bias = weight("output_bias", (channels,), True)
        for quantizer in self.quantizers:  # their ranges exist before a file's weights load
            quantizer.build(())

    def _attention(self, x, training):
        """EM iterations and reconstruction on the (B, H, W, C) projection."""
        quantize = self.quantize_attention
        flat = ops.reshape(ops.stop_gradient(x), (ops.shape(x)[0], -1, x.shape[-1]))
        shared = ops.transpose(ops.convert_to_tensor(self.bases))  # (K, C)
        if quantize:  # a constant operand of BATCH_MATMUL: symmetric, per tensor
            bound = ops.maximum(ops.max(ops.abs(shared)), 1e-8)
            shared = keras.quantizers.fake_quant_with_min_max_vars(
                shared, -bound, bound, num_bits=8, narrow_range=True
            )
        batch_shape = (ops.shape(x)[0],) + tuple(shared.shape)
        bases = ops.broadcast_to(ops.expand_dims(shared, 0), batch_shape)
        for t in range(self.num_iterations):
            logits = ops.einsum("bnc,bkc->bnk", flat, bases)
            if quantize:
                logits = self.logits_quantizers[t](logits, training=training)
            z = ops.softmax(logits, axis=-1)
            if quantize:
                z = fake_quantize(z, *SOFTMAX_RANGE)
            sums = ops.einsum("bnc,bnk->bkc", flat, z)
            if quantize:
                sums = self.sums_quantizers[t](sums, training=training)
            bases = _unit_bases(sums, self.epsilon)
            if quantize:
                bases = fake_quantize(bases, *L2_NORMALIZATION_RANGE)
        reconstruction = ops.einsum("bnk,bkc->bnc", z, bases)
        if quantize:
            reconstruction = self.reconstruction_quantizer(reconstruction, training=training)
        return ops.reshape(ops.stop_gradient(reconstruction), ops.shape(x))

    def call(self, inputs, training=None):
        x = _conv1x1(inputs, self.input_kernel, self.input_bias)
        x = self.projection_quantizer(x, training=training)
        x = ops.relu(self._attention(x, training))
        x = self.relu_quantizer(x, training=training)
        x = _conv1x1(x, self.output_kernel, self.output_bias)
        x = self.output_quantizer(x, training=training)
        return ops.relu(x + inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_bases": self.num_bases,
            "num_iterations": self.num_iterations,
            "epsilon": self.epsilon,
            "range_momentum": self.range_momentum,
            "quantize_attention": self.quantize_attention,
        }
