"""BatchNormalization whose synchronised statistics trace fast, on every backend.

Keras' `BatchNormalization(synchronized=True)` all-reduces three sums through
`ReplicaContext.all_reduce`, whose gradient costs a walk over the other
replicas' graph each time it is traced (see
`tensorflow_ops.sum_over_replicas`). On TensorFlow this layer computes the
same statistics with the same formula (global sum and sum of squares over the
global count; variance E[x^2] - E[x]^2, clipped at 0) from a single
all-reduce per layer. It is Keras' layer otherwise: same arguments, weights,
names and outputs.

With fixed statistics (inference, or a frozen layer) on a 4-D NHWC map on
TensorFlow it runs as one FusedBatchNormV3 op: TensorFlow's graph optimiser
fuses that op into the Conv2D before it and the ReLU after, so a model as
built runs inference about as fast as one with its BatchNorms folded into
the convolutions (`ema_keras.inference.folding`), where Keras' form
(`tf.nn.batch_normalization`: a multiply and an add over the map, plus casts
under a mixed policy) stays separate passes over memory.

On JAX and PyTorch, `synchronized` is accepted (so files saved on TensorFlow
load) but behaves as False: it is Keras' BatchNormalization unchanged, which
Keras allows `synchronized=True` only on TensorFlow. Under
`keras.distribution.DataParallel` on JAX the batch is one global array, so its
statistics are the global batch's anyway.
"""

import keras

from ema_keras.layers import tensorflow_ops
from ema_keras.serialization import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class SyncBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a fast-tracing `synchronized=True`.

    With `synchronized=False` or a mask, or off TensorFlow, it is Keras' layer
    unchanged. `get_config` keeps the `synchronized` it was given, so a file
    saved on JAX and loaded on TensorFlow synchronises there as asked.
    """

    def __init__(self, *args, synchronized=False, **kwargs):
        super().__init__(*args, synchronized=synchronized and tensorflow_ops.ENABLED, **kwargs)
        self._requested_synchronized = bool(synchronized)

    # Keras 3.15 internal (no public route; tests/test_keras_internals.py): the hook
    # through which Keras' BatchNormalization.call gets a batch's statistics.
    def _moments(self, inputs, mask):
        if not self.synchronized or mask is not None:
            return super()._moments(inputs, mask)
        # `call` has already cast float16/bfloat16 inputs to float32.
        return tensorflow_ops.batch_moments_over_replicas(inputs, self._reduction_axes)

    def call(self, inputs, training=None, mask=None):
        if (training and self.trainable) or mask is not None or not self._runs_fused(inputs):
            return super().call(inputs, training=training, mask=mask)
        channels = self.moving_mean.shape[0]
        scale = self.gamma if self.scale else keras.ops.ones((channels,), "float32")
        offset = self.beta if self.center else keras.ops.zeros((channels,), "float32")
        outputs = tensorflow_ops.batch_norm_inference(
            keras.ops.cast(inputs, self.compute_dtype),
            keras.ops.cast(self.moving_mean, "float32"),
            keras.ops.cast(self.moving_variance, "float32"),
            keras.ops.cast(scale, "float32"),
            keras.ops.cast(offset, "float32"),
            self.epsilon,
        )
        return keras.ops.cast(outputs, self.compute_dtype)

    def _runs_fused(self, inputs):
        return (
            tensorflow_ops.ENABLED
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.compute_dtype in ("float32", "bfloat16", "float16")
            and not self.renorm
        )

    def get_config(self):
        config = super().get_config()
        config["synchronized"] = self._requested_synchronized
        return config
