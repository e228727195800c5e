"""EMANet models: the dilated ResNet backbone, the segmenter and its presets."""

from ema_keras.models.class_info import ClassInfo, class_info, set_class_info
from ema_keras.models.dilated_resnet import DilatedResNet, dilation_scheme
from ema_keras.models.emanet import EMANet
from ema_keras.models.input_contract import expects_raw_pixels, model_inputs
from ema_keras.models.mobile_emanet import MobileEMANet
from ema_keras.models.mobilenet_v3 import MobileNetV3Backbone
from ema_keras.models.presets import PRESETS, get_preset, preset_architecture, register_preset

_ARCHITECTURES = {"emanet": EMANet, "mobile_emanet": MobileEMANet}


def build_preset(name, /, **overrides):
    """Any preset, built by its own class (`EMANet` or `MobileEMANet`) `.from_preset`."""
    return _ARCHITECTURES[preset_architecture(name)].from_preset(name, **overrides)


__all__ = [
    "ClassInfo",
    "DilatedResNet",
    "EMANet",
    "MobileEMANet",
    "MobileNetV3Backbone",
    "PRESETS",
    "build_preset",
    "class_info",
    "dilation_scheme",
    "expects_raw_pixels",
    "get_preset",
    "model_inputs",
    "preset_architecture",
    "register_preset",
    "set_class_info",
]
