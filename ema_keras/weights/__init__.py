"""Pretrained weights: the official EMANet checkpoints, ImageNet backbones, our own files.

Loading (no torch needed for Keras files):

    model = EMANet.from_preset("emanet_resnet101_os8_voc")
    load_model_weights(model, "emanet_r101_voc.keras")            # full model
    load_fine_tuning_weights(model_3_classes, "emanet_r101_voc.keras")  # all but classifiers
    load_backbone_weights(model.backbone, "resnet101_deep.keras")  # ImageNet trunk

Converting (needs torch, `pip install 'ema-keras[convert]'`):

    convert_official_checkpoint("final.pth", "emanet_r101_voc.keras")
    convert_deep_stem_backbone("resnet101.pth", "resnet101_deep.keras")
    convert_torchvision_resnet("resnet50-0676ba61.pth", "resnet50_tv.keras")
"""

from ema_keras.weights.convert import (
    KINDS,
    convert_checkpoint,
    convert_deep_stem_backbone,
    convert_official_checkpoint,
    convert_torchvision_resnet,
    detect_kind,
)
from ema_keras.weights.layer_weights import WeightsMismatchError
from ema_keras.weights.loading import (
    LoadedWeights,
    classifier_layers,
    copy_fine_tuning_weights,
    load_backbone_weights,
    load_fine_tuning_weights,
    load_model_weights,
    load_official_state_dict,
)

__all__ = [
    "KINDS",
    "LoadedWeights",
    "WeightsMismatchError",
    "classifier_layers",
    "convert_checkpoint",
    "convert_deep_stem_backbone",
    "convert_official_checkpoint",
    "convert_torchvision_resnet",
    "copy_fine_tuning_weights",
    "detect_kind",
    "load_backbone_weights",
    "load_fine_tuning_weights",
    "load_model_weights",
    "load_official_state_dict",
]
