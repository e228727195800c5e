"""Layers of ema-keras; importing this module registers them for serialization."""

from ema_keras.layers.em_attention import EMALayer, EMAUnit
from ema_keras.layers.initializers import L2NormalizedNormal

__all__ = ["EMALayer", "EMAUnit", "L2NormalizedNormal"]
