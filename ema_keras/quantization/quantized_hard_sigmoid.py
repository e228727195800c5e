"""Hard sigmoid in two int8 steps, as the TFLite file computes it.

Keras' hard sigmoid, relu6(x + 3) / 6, becomes two LiteRT ops: ADD with a
fused RELU6, then MUL by 1/6. The tensor between them is int8 with a scale of
its own, calibrated on [0, 6]-ish values: a step of about 6/255, coarser
than the one of the output (whose values are below 1), so its rounding is the
largest int8 error of a MobileNetV3 squeeze-excite block (measured: a mean of
8.6 output steps between the file and a QAT model that skipped it). This
layer rounds that tensor too, with a learnt range; the output is rounded by
whatever reads it, like every other layer's.
"""

import keras
from keras import ops

from ema_keras.quantization.activation_quantizer import ActivationQuantizer
from ema_keras.serialization import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantizedHardSigmoid(keras.layers.Layer):
    """relu6(x + 3), fake-quantized per tensor, then / 6."""

    def __init__(self, range_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        self.range_momentum = float(range_momentum)
        self.shifted_quantizer = ActivationQuantizer(range_momentum, name="shifted_quantizer")

    def build(self, input_shape):
        self.shifted_quantizer.build(input_shape)

    @property
    def quantizers(self):
        return [self.shifted_quantizer]

    def call(self, inputs, training=None):
        shifted = self.shifted_quantizer(ops.relu6(inputs + 3.0), training=training)
        return shifted * (1.0 / 6.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "range_momentum": self.range_momentum}
