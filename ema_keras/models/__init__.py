"""EMANet models: image encoders, backbones, the segmenter, presets and preset folders.

The family, keras-hub's shape: an image encoder (`DilatedResNet`,
`MobileNetV3Backbone`) inside a backbone that adds the EMA head
(`EMANetBackbone`, `MobileEMANetBackbone`) inside the task model that
classifies (`EMANetImageSegmenter`). `EMANet` and `MobileEMANet` are 0.1's
classes, kept for the files they saved.

    from ema_keras.models import EMANetImageSegmenter
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3)
    model.save_to_preset("my_preset")                      # config.json, weights, metadata
    same = EMANetImageSegmenter.from_preset("my_preset")   # or "hf://org/name", "kaggle://..."
"""

from ema_keras.models.class_info import ClassInfo, class_info, set_class_info
from ema_keras.models.dilated_resnet import DilatedResNet, dilation_scheme
from ema_keras.models.emanet import EMANet
from ema_keras.models.emanet_backbone import EMANetBackbone
from ema_keras.models.image_segmenter import EMANetImageSegmenter
from ema_keras.models.input_contract import expects_raw_pixels, model_inputs
from ema_keras.models.mobile_emanet import MobileEMANet
from ema_keras.models.mobile_emanet_backbone import MobileEMANetBackbone
from ema_keras.models.mobilenet_v3 import MobileNetV3Backbone
from ema_keras.models.preset_files import is_preset_location
from ema_keras.models.preset_upload import upload_preset
from ema_keras.models.presets import (
    PRESETS,
    Preset,
    get_preset,
    preset_architecture,
    preset_names,
    register_preset,
)


def build_preset(preset, /, **overrides):
    """Any preset (name, folder, hf://, kaggle://): `EMANetImageSegmenter.from_preset`."""
    return EMANetImageSegmenter.from_preset(preset, **overrides)


__all__ = [
    "ClassInfo",
    "DilatedResNet",
    "EMANet",
    "EMANetBackbone",
    "EMANetImageSegmenter",
    "MobileEMANet",
    "MobileEMANetBackbone",
    "MobileNetV3Backbone",
    "PRESETS",
    "Preset",
    "build_preset",
    "class_info",
    "dilation_scheme",
    "expects_raw_pixels",
    "get_preset",
    "is_preset_location",
    "model_inputs",
    "preset_architecture",
    "preset_names",
    "register_preset",
    "set_class_info",
    "upload_preset",
]
