"""Training: strategies, checkpoints that resume, named recipes and the fit loop."""

from ema_keras.training.checkpointing import TrainingDiverged
from ema_keras.training.config import RECIPES, SettingsError, TrainConfig, get_recipe
from ema_keras.training.strategy import make_strategy
from ema_keras.training.run_record import load_config
from ema_keras.training.trainer import TrainResult, train

__all__ = [
    "RECIPES",
    "SettingsError",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "get_recipe",
    "load_config",
    "make_strategy",
    "train",
]
