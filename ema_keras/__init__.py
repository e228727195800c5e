"""EMANet for Keras 3 / TensorFlow.

Importing the package pins Keras to the TensorFlow backend and registers every
custom class for serialization, so `keras.models.load_model` can read our
`.keras` files once `ema_keras` is imported.
"""

from ema_keras import backend as _backend  # noqa: F401  (must precede keras imports)
from ema_keras import cost, data, layers, losses, metrics, models, optimizers, schedules
from ema_keras.version import __version__

__all__ = [
    "cost",
    "data",
    "layers",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "schedules",
    "__version__",
]
