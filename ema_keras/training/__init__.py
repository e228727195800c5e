"""Training: strategies, checkpoints that resume, named recipes and the fit loop.

The names below load on first use (PEP 562), so that the pieces a saved model
refers to — the optimizer, schedule, losses and metrics, which need only Keras —
can be imported on JAX and PyTorch without the TensorFlow-based trainer
(`ema_keras/__init__.py` does so, for `keras.models.load_model`).
"""

import importlib

# Public name -> the module of this package that defines it.
_EXPORTS = {
    "RECIPES": "config",
    "SettingsError": "config",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "TrainingDiverged": "checkpointing",
    "get_recipe": "config",
    "load_config": "run_record",
    "make_strategy": "strategy",
    "train": "trainer",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    try:  # a submodule, as `package.module` reads when the package imported it eagerly
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
