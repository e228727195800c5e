"""Layers of ema-keras; importing this module registers them for serialization."""

from ema_keras.layers.batch_norm import SyncBatchNormalization
from ema_keras.layers.conv_bn import apply_conv_bn
from ema_keras.layers.dilated_conv import DilatedConv2D
from ema_keras.layers.em_attention import EMALayer, EMAUnit
from ema_keras.layers.image_normalization import ImageNormalization
from ema_keras.layers.initializers import L2NormalizedNormal
from ema_keras.layers.resize import BilinearResize

__all__ = [
    "BilinearResize",
    "DilatedConv2D",
    "EMALayer",
    "EMAUnit",
    "ImageNormalization",
    "L2NormalizedNormal",
    "SyncBatchNormalization",
    "apply_conv_bn",
]
