"""Pretrained weights: the official EMANet checkpoints, ImageNet backbones, our own files.

Loading (no torch needed for Keras files):

    model = EMANetImageSegmenter.from_preset("emanet_resnet101_os8_voc")
    load_model_weights(model, "emanet_r101_voc.keras")            # full model
    load_fine_tuning_weights(model_3_classes, "emanet_r101_voc.keras")  # all but classifiers
    load_backbone_weights(model.image_encoder, "resnet101_deep.keras")  # ImageNet trunk

Converting (needs torch, `pip install 'ema-keras[convert]'`):

    convert_official_checkpoint("final.pth", "emanet_r101_voc.keras")
    convert_deep_stem_backbone("resnet101.pth", "resnet101_deep.keras")
    convert_torchvision_resnet("resnet50-0676ba61.pth", "resnet50_tv.keras")
"""

from ema_keras.lazy_exports import lazy_exports

# Public name -> the module of this package that defines it. Loaded on first use, so
# that the models can import this package's file readers (`loading`, `keras_files`,
# `layer_weights`) without the converters, which build models.
_EXPORTS = {
    "KINDS": "convert",
    "LoadedWeights": "loading",
    "WeightsMismatchError": "layer_weights",
    "classifier_layers": "loading",
    "convert_checkpoint": "convert",
    "convert_deep_stem_backbone": "convert",
    "convert_official_checkpoint": "convert",
    "convert_torchvision_resnet": "convert",
    "copy_fine_tuning_weights": "loading",
    "detect_kind": "convert",
    "load_backbone_weights": "loading",
    "load_fine_tuning_weights": "loading",
    "load_model_weights": "loading",
    "load_official_state_dict": "loading",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
