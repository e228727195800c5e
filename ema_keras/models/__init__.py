"""EMANet models: the dilated ResNet backbone, the segmenter and its presets."""

from ema_keras.models.dilated_resnet import DilatedResNet, dilation_scheme
from ema_keras.models.emanet import EMANet
from ema_keras.models.presets import PRESETS, get_preset, register_preset

__all__ = ["DilatedResNet", "EMANet", "PRESETS", "dilation_scheme", "get_preset", "register_preset"]
