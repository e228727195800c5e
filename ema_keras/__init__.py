"""EMANet for Keras 3: layers, models and training on TensorFlow, JAX and PyTorch; export
through TF.

Importing the package registers every custom class for serialization, so
`keras.models.load_model` can read our `.keras` files once `ema_keras` is
imported. The Keras backend is chosen as Keras chooses it (`KERAS_BACKEND`),
with TensorFlow the default when nothing says otherwise (see
`ema_keras.backend`).

The layers and models (`ema_keras.layers`, `ema_keras.models`, `ema_keras.cost`)
run on every backend without TensorFlow. The data pipeline (tf.data), training
(tf.distribute on TensorFlow; `keras.distribution` on JAX; one device on
PyTorch), inference and export (SavedModel, LiteRT) need TensorFlow installed:
they are imported with the package on TensorFlow, and on other backends only
when first used (`ema_keras.training`), so that importing the package does not
start TensorFlow. What a trained file refers to besides its layers (the
optimizer, schedule, losses and metrics) needs only Keras and is registered on
every backend.
"""

import importlib

from ema_keras import backend as _backend  # noqa: F401  (must precede keras imports)
from ema_keras import cost, layers, models
from ema_keras.version import __version__

# Subpackages that need TensorFlow (tf.data, tf.distribute, SavedModel, LiteRT).
_TENSORFLOW_SUBPACKAGES = ("data", "inference", "quantization", "training")

# What a compiled or trained `.keras` file names besides its layers: Keras alone,
# registered on every backend so that `keras.models.load_model` reads every file we write.
from ema_keras import losses, metrics, optimizers, schedules  # noqa: E402,F401

if _backend.BACKEND == "tensorflow":
    from ema_keras import data, inference, quantization, training  # noqa: F401


def __getattr__(name):
    # Off TensorFlow, the TF-only subpackages load on first use.
    if name in _TENSORFLOW_SUBPACKAGES:
        return importlib.import_module(f"ema_keras.{name}")
    raise AttributeError(f"module 'ema_keras' has no attribute {name!r}")


__all__ = [
    "cost",
    "data",
    "inference",
    "layers",
    "models",
    "quantization",
    "training",
    "__version__",
]
