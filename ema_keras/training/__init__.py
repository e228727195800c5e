"""Training: strategies, checkpoints that resume, named recipes and the fit loop.

The names below load on first use (PEP 562), so that the pieces a saved model
refers to — the optimizer, schedule, losses and metrics, which need only Keras —
can be imported on JAX and PyTorch without the TensorFlow-based trainer
(`ema_keras/__init__.py` does so, for `keras.models.load_model`).
"""

from ema_keras.lazy_exports import lazy_exports

# Public name -> the module of this package that defines it.
_EXPORTS = {
    "RECIPES": "config",
    "SettingsError": "errors",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "TrainingDiverged": "checkpointing",
    "get_recipe": "config",
    "load_config": "run_record",
    "make_strategy": "strategy",
    "train": "trainer",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
