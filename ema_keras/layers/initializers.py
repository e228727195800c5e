"""Initializers used by the EM attention layers."""

import keras
from keras import ops

from ema_keras.serialization import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class L2NormalizedNormal(keras.initializers.Initializer):
    """Normal(0, stddev) samples, then L2-normalised along `axis`.

    The EMANet bases are drawn this way: Normal(0, sqrt(2 / K)) over a
    (C, K) matrix, each column then scaled to unit L2 norm over C.
    """

    def __init__(self, stddev=1.0, axis=0, seed=None):
        self.stddev = float(stddev)
        self.axis = int(axis)
        self.seed = seed
        self._normal = keras.initializers.RandomNormal(stddev=self.stddev, seed=seed)

    def __call__(self, shape, dtype=None):
        values = self._normal(shape, dtype=dtype)
        norm = ops.sqrt(ops.sum(ops.square(values), axis=self.axis, keepdims=True))
        return values / ops.maximum(norm, 1e-12)

    def get_config(self):
        return {"stddev": self.stddev, "axis": self.axis, "seed": self.seed}


def conv_kernel_initializer(seed=None):
    """He-normal over fan-out: the official code's Normal(0, sqrt(2 / (k*k*out)))."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=seed
    )
