"""BatchNormalization whose synchronised statistics trace fast.

Keras' `BatchNormalization(synchronized=True)` all-reduces three sums through
`ReplicaContext.all_reduce`, whose gradient costs a walk over the other
replicas' graph each time it is traced (see `cross_replica`). This layer
computes the same statistics with the same formula (global sum and sum of
squares over the global count; variance E[x^2] - E[x]^2, clipped at 0) from a
single all-reduce per layer, through `cross_replica.sum_over_replicas`. It is
Keras' layer otherwise: same arguments, weights, names and outputs.
"""

import keras
import tensorflow as tf

from ema_keras.layers.cross_replica import sum_over_replicas


@keras.saving.register_keras_serializable(package="ema_keras")
class SyncBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a fast-tracing `synchronized=True`.

    With `synchronized=False` or a mask, it is Keras' layer unchanged.
    """

    def _moments(self, inputs, mask):
        if not self.synchronized or mask is not None:
            return super()._moments(inputs, mask)
        # `call` has already cast float16/bfloat16 inputs to float32.
        axes = self._reduction_axes
        local_sum = tf.reduce_sum(inputs, axis=axes, keepdims=True)
        local_squared_sum = tf.reduce_sum(tf.square(inputs), axis=axes, keepdims=True)
        local_count = tf.reduce_sum(tf.ones_like(inputs), axis=axes, keepdims=True)
        total, squared_total, count = sum_over_replicas(
            [local_sum, local_squared_sum, local_count]
        )
        mean = tf.math.divide_no_nan(total, count)
        variance = tf.maximum(tf.math.divide_no_nan(squared_total, count) - tf.square(mean), 0.0)
        return tf.squeeze(mean, axes), tf.squeeze(variance, axes)
