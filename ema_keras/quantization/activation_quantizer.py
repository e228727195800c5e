"""Per-tensor int8 fake quantization of activations, its range learnt by moving average.

LiteRT's int8 spec quantizes every activation tensor with one scale and one
zero point (asymmetric, -128..127). During quantization-aware training each
such tensor passes through an `ActivationQuantizer`: in training it measures
the batch's min and max, folds them into a moving average (the first batch
sets them), and rounds the tensor to the 256 levels of that range; at
inference it uses the learnt range. The rounding is
`keras.quantizers.fake_quant_with_min_max_vars`, whose gradient is the
straight-through estimator (1 inside the range, 0 where clipped); on
TensorFlow it is `tf.quantization.fake_quant_with_min_max_vars`, the op the
TFLite converter reads as the tensor's quantization range.
"""

import keras
from keras import ops

from ema_keras.layers import tensorflow_ops
from ema_keras.serialization import PACKAGE

NUM_BITS = 8


def fake_quantize(inputs, range_min, range_max):
    """`inputs` rounded to the 256 levels of [range_min, range_max] (0 exactly representable)."""
    range_min = ops.minimum(ops.cast(range_min, "float32"), 0.0)
    range_max = ops.maximum(ops.cast(range_max, "float32"), 0.0)
    # An all-zero tensor has an empty range; any positive width represents 0 exactly.
    range_max = ops.maximum(range_max, range_min + 1e-6)
    return keras.quantizers.fake_quant_with_min_max_vars(
        ops.cast(inputs, "float32"), range_min, range_max, num_bits=NUM_BITS
    )


def _global_batch_range(values):
    """(min, max) of `values`, the same on every replica (mean of the replicas' extremes)."""
    extremes = ops.stack([ops.min(values), ops.max(values)])
    if tensorflow_ops.ENABLED:
        extremes = tensorflow_ops.mean_over_replicas(ops.expand_dims(extremes, 0))
    return extremes[0], extremes[1]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantizes a tensor to int8 per tensor, with a moving-average range.

    State (non-trainable, float32): `range_min`, `range_max` and `calibrated`
    (0 until the first training batch, which sets the range; later ones move
    it). Until then the range is empty and the layer outputs zeros: a
    quantization-aware model is meant to be fine-tuned (`fine_tune`) first.

    Args:
        momentum: moving-average momentum of the range (0.99: a range settles
            in a few hundred steps, the length of a QAT fine-tune).
    """

    def __init__(self, momentum=0.99, **kwargs):
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum}.")
        self.momentum = float(momentum)

    def build(self, input_shape):
        def state(name):
            return self.add_weight(
                name=name,
                shape=(),
                initializer="zeros",
                trainable=False,
                autocast=False,
                dtype="float32",
                aggregation="only_first_replica",
            )

        self.range_min = state("range_min")
        self.range_max = state("range_max")
        self.calibrated = state("calibrated")

    def call(self, inputs, training=None):
        values = ops.cast(inputs, "float32")
        if training and self.trainable:
            batch_min, batch_max = _global_batch_range(ops.stop_gradient(values))
            calibrated = self.calibrated > 0.5
            momentum = self.momentum
            range_min = ops.where(
                calibrated, momentum * self.range_min + (1 - momentum) * batch_min, batch_min
            )
            range_max = ops.where(
                calibrated, momentum * self.range_max + (1 - momentum) * batch_max, batch_max
            )
            self.range_min.assign(range_min)
            self.range_max.assign(range_max)
            self.calibrated.assign(1.0)
            range_min, range_max = ops.stop_gradient(range_min), ops.stop_gradient(range_max)
        else:
            # The learnt range alone (constants once exported: the TFLite converter
            # reads them as this tensor's int8 scale and zero point).
            range_min, range_max = self.range_min, self.range_max
        return ops.cast(fake_quantize(values, range_min, range_max), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}
