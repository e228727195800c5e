"""Pins Keras to the TensorFlow backend before anything imports Keras.

ema-keras relies on tf.distribute, tf.data, SavedModel and LiteRT, which exist
only on the TensorFlow backend. A user who set another backend gets a clear
error instead of a half-working library.
"""

import os

_BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if _BACKEND != "tensorflow":
    raise ImportError(
        f"ema_keras needs the TensorFlow backend of Keras, but KERAS_BACKEND={_BACKEND!r}. "
        "Unset KERAS_BACKEND or set it to 'tensorflow'."
    )

try:
    import tensorflow  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ema_keras needs TensorFlow. Install it with the extra that fits the machine: "
        "pip install 'ema-keras[cpu]' (CPU-only) or 'ema-keras[gpu]' (CUDA)."
    ) from error
