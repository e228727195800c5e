"""BatchNormalization whose synchronised statistics trace fast, on every backend.

Keras' `BatchNormalization(synchronized=True)` all-reduces three sums through
`ReplicaContext.all_reduce`, whose gradient costs a walk over the other
replicas' graph each time it is traced (see
`tensorflow_ops.sum_over_replicas`). On TensorFlow this layer computes the
same statistics with the same formula (global sum and sum of squares over the
global count; variance E[x^2] - E[x]^2, clipped at 0) from a single
all-reduce per layer. It is Keras' layer otherwise: same arguments, weights,
names and outputs.

On JAX and PyTorch, `synchronized` is accepted (so files saved on TensorFlow
load) but behaves as False: it is Keras' BatchNormalization unchanged, which
Keras allows `synchronized=True` only on TensorFlow. Under
`keras.distribution.DataParallel` on JAX the batch is one global array, so its
statistics are the global batch's anyway.
"""

import keras

from ema_keras.layers import tensorflow_ops


@keras.saving.register_keras_serializable(package="ema_keras")
class SyncBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a fast-tracing `synchronized=True`.

    With `synchronized=False` or a mask, or off TensorFlow, it is Keras' layer
    unchanged. `get_config` keeps the `synchronized` it was given, so a file
    saved on JAX and loaded on TensorFlow synchronises there as asked.
    """

    def __init__(self, *args, synchronized=False, **kwargs):
        super().__init__(*args, synchronized=synchronized and tensorflow_ops.ENABLED, **kwargs)
        self._requested_synchronized = bool(synchronized)

    def _moments(self, inputs, mask):
        if not self.synchronized or mask is not None:
            return super()._moments(inputs, mask)
        # `call` has already cast float16/bfloat16 inputs to float32.
        return tensorflow_ops.batch_moments_over_replicas(inputs, self._reduction_axes)

    def get_config(self):
        config = super().get_config()
        config["synchronized"] = self._requested_synchronized
        return config
