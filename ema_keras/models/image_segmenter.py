"""EMANetImageSegmenter: an EMANet backbone, the classifier, logits at the image's size.

    model = EMANetImageSegmenter.from_preset("emanet_resnet50_os8_voc", num_classes=5)
    model = EMANetImageSegmenter(
        backbone=EMANetBackbone(image_encoder=DilatedResNet(depth=50)), num_classes=5
    )

`from_preset(preset, **overrides)` builds any preset: a built-in name
(`ema_keras.models.presets`), a preset folder written by `save_to_preset`,
`"hf://org/name"` or `"kaggle://owner/model/keras/variant"`.
"""

import copy

import keras

from ema_keras.layers.conv_bn import apply_conv_bn, batch_norm_settings, layer_seed
from ema_keras.layers.resize import BilinearResize
from ema_keras.models import preset_files
from ema_keras.models.class_info import checked_class_info
from ema_keras.models.emanet_backbone import FEATURES, EMAHeadBackbone, EMANetBackbone
from ema_keras.models.functional_model import (
    BASE_ARGUMENTS,
    check_counts,
    check_dropout,
    check_keywords,
    merge_overrides,
    with_article,
)
from ema_keras.models.mobile_emanet_backbone import MobileEMANetBackbone
from ema_keras.models.presets import (
    get_preset,
    is_preset_name,
    preset_architecture,
    weights_to_load,
)
from ema_keras.models.segmenter_base import SegmenterBase, apply_classifier
from ema_keras.serialization import PACKAGE
from ema_keras.weights.loading import load_model_weights

# Preset architecture name -> the backbone class its presets describe.
BACKBONES = {cls.architecture: cls for cls in (EMANetBackbone, MobileEMANetBackbone)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class EMANetImageSegmenter(SegmenterBase):
    """EMANet semantic segmenter (Li et al., ICCV 2019): a backbone and its classifier.

    On the backbone's features: channel dropout and a 1x1 conv with bias
    (`classifier_dropout`, `classifier_conv`), then a bilinear resize to the
    input image (`logits`, float32 whatever the dtype policy). A backbone
    with a `low_level_feature_key` (`MobileEMANetBackbone`: P3) has that level
    classified too and the two summed, LR-ASPP's fusion (`head_dropout`,
    `classifier_high`, `classifier_low`, `classifier_add`).

    `aux_head` (mmsegmentation's option) adds an FCN head on the encoder's P4
    (3x3 conv-BN-ReLU to `aux_channels`, dropout, 1x1 conv: `aux_*`); the
    model then returns `{"logits": ..., "aux_logits": ...}`, both (B, H, W,
    num_classes), which `compile()` weighs 1.0 and 0.4 as the official code.

    Input: what the backbone's image encoder takes; those built now take raw
    RGB pixels 0..255 (`expects_raw_pixels(model)` answers for any model).

    Args:
        backbone: an `EMANetBackbone` or a `MobileEMANetBackbone`.
        num_classes: number of classes (21 for PASCAL VOC).
        dropout: channel dropout rate before the classifiers.
        aux_head: add the auxiliary FCN head on the encoder's P4.
        aux_channels: channels of the auxiliary head's conv.
        align_corners: bilinear upsampling convention (True = official).
        batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized: the
            auxiliary head's BatchNorm settings.
        seed: seed of the initializers and dropout.
        dtype: dtype policy of the classifier's layers (logits stay float32).
        class_names, palette: the classes' names and display colours ([r, g, b]
            0..255), one per class, or None; saved with the model for the tools
            that read it (`ema_keras.models.class_info`).
    """

    classifier_layer_names = (
        "classifier_conv", "aux_classifier_conv", "classifier_high", "classifier_low",
    )  # fmt: skip

    def __init__(
        self,
        *,
        backbone,
        num_classes=21,
        dropout=0.1,
        aux_head=False,
        aux_channels=256,
        align_corners=True,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        batch_norm_synchronized=None,
        seed=None,
        dtype=None,
        class_names=None,
        palette=None,
        **kwargs,
    ):
        if not isinstance(backbone, EMAHeadBackbone):
            raise ValueError(
                "`backbone` must be an EMANetBackbone or a MobileEMANetBackbone (an image "
                f"encoder such as {type(backbone).__name__} goes in one: "
                "EMANetBackbone(image_encoder=...)), "
                f"got {type(backbone).__name__}."
            )
        check_counts(num_classes=num_classes, aux_channels=aux_channels)
        check_dropout(dropout)
        if aux_head and "P4" not in backbone.output:
            raise ValueError("`aux_head` reads the encoder's P4, which this backbone lacks.")
        class_names, palette = checked_class_info(class_names, palette, num_classes)
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )
        kwargs.setdefault("name", f"{backbone.architecture}_image_segmenter")

        # === Functional model ===
        inputs = keras.Input(shape=tuple(backbone.input.shape[1:]), name="image")
        outputs = backbone(inputs)
        low_level = backbone.low_level_feature_key
        head = "head" if low_level else "classifier"
        x = keras.layers.SpatialDropout2D(
            dropout, seed=layer_seed(seed, f"{head}_dropout"), dtype=dtype,
            name=f"{head}_dropout",
        )(outputs[FEATURES])  # fmt: skip
        if low_level:
            high = apply_classifier(x, num_classes, name="classifier_high", seed=seed, dtype=dtype)
            low = apply_classifier(
                outputs[low_level], num_classes, name="classifier_low", seed=seed, dtype=dtype
            )
            x = keras.layers.Add(dtype=dtype, name="classifier_add")([high, low])
        else:
            x = apply_classifier(x, num_classes, name="classifier_conv", seed=seed, dtype=dtype)
        # float32 logits: the resize runs (and returns) in float32 under mixed precision.
        logits = BilinearResize(align_corners, dtype="float32", name="logits")([x, inputs])
        model_outputs = logits
        if aux_head:
            y = apply_conv_bn(
                outputs["P4"], aux_channels, 3, name="aux", batch_norm=batch_norm, seed=seed,
                dtype=dtype,
            )  # fmt: skip
            y = keras.layers.SpatialDropout2D(
                dropout, seed=layer_seed(seed, "aux_classifier_dropout"), dtype=dtype,
                name="aux_classifier_dropout",
            )(y)  # fmt: skip
            y = apply_classifier(y, num_classes, name="aux_classifier_conv", seed=seed, dtype=dtype)
            aux_logits = BilinearResize(align_corners, dtype="float32", name="aux_logits")(
                [y, inputs]
            )
            model_outputs = {"logits": logits, "aux_logits": aux_logits}
        super().__init__(inputs=inputs, outputs=model_outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.dropout = float(dropout)
        self.aux_head = bool(aux_head)
        self.aux_channels = int(aux_channels)
        self.align_corners = bool(align_corners)
        self.batch_norm_momentum = batch_norm["momentum"]
        self.batch_norm_epsilon = batch_norm["epsilon"]
        self.batch_norm_synchronized = batch_norm["synchronized"]
        self.seed = seed
        self.class_names = class_names
        self.palette = palette

    @property
    def image_encoder(self):
        """The backbone's image encoder (the ImageNet trunk: a `DilatedResNet`, ...)."""
        return self.backbone.image_encoder

    @classmethod
    def from_preset(cls, preset, /, *, load_weights=None, **overrides):
        """Builds a preset: a built-in name, a preset folder, `hf://...` or `kaggle://...`.

        `overrides` replace the preset's arguments wherever they belong: the
        image encoder's (for the ResNets: `depth`, `block_counts`, `stem`,
        `output_stride`, `multi_grid`, `width`, `use_conv_bias`,
        `include_preprocessing`, `image_shape`; for MobileNetV3: `variant`,
        ...), the backbone's head (`head_channels`, `ema_num_bases`, ...), the
        segmenter's (`num_classes`, `dropout`, `aux_head`, ...); `seed`,
        `dtype` and the BatchNorm settings go to all three (MobileNetV3 keeps
        its own epsilon). An unknown keyword raises a `TypeError` naming it.
        `backbone=` and `image_encoder=` may be built models or dicts of
        their arguments (built-in presets only).

        `load_weights`: `None` (default) loads the preset's weights when it
        has them; `True` requires them; `False` never loads. A built-in
        preset's weights load strictly (`ema_keras.weights.load_model_weights`:
        an override of `num_classes` needs `load_weights=False`); a preset
        folder's load for fine-tuning (`load_fine_tuning_weights`): with
        another `num_classes` every weight but the classifiers'.

        Loading runs no code from the preset: its `config.json` must name an
        EMANet segmenter and is read in Keras' safe mode (a `Lambda` is
        refused), its weights are arrays in an HDF5 file.

            model = EMANetImageSegmenter.from_preset("emanet_mobilenetv3_small_voc")
            mine = EMANetImageSegmenter.from_preset("hf://me/emanet-defects", num_classes=4)
        """
        if "weights" in overrides:
            raise TypeError(
                f"{cls.__name__}.from_preset got an unexpected keyword argument 'weights': use "
                "load_weights=True with a preset that has weights, or "
                "ema_keras.weights.load_model_weights(model, path)."
            )
        if not is_preset_name(preset) and preset_files.is_preset_location(preset):
            return preset_files.load_preset(
                SegmenterBase, preset, load_weights=load_weights, overrides=overrides
            )
        backbone_class = BACKBONES[preset_architecture(preset)]
        weights = weights_to_load(preset, load_weights)
        model = build_segmenter(
            backbone_class, get_preset(preset), overrides, owner=f"{cls.__name__}.from_preset"
        )
        if weights is not None:
            load_model_weights(model, weights)
        return model


def build_segmenter(backbone_class, config, overrides=None, *, owner="EMANetImageSegmenter"):
    """The segmenter of a preset's `config` with `overrides` merged in (see `from_preset`).

    `config` holds the segmenter's arguments, `config["backbone"]` the
    backbone's, `config["backbone"]["image_encoder"]` the encoder's. A config
    in the layout of 0.1 (`EMANet`'s arguments, `"backbone"` the encoder's)
    is read as that (`nested_config`).
    """
    config = nested_config(backbone_class, config)
    overrides = dict(overrides or {})
    encoder_class = backbone_class.image_encoder_class
    built_backbone = _built(overrides, "backbone", EMAHeadBackbone, config, backbone_class)
    built_encoder = _built(
        overrides, "image_encoder", keras.Model, config["backbone"], encoder_class
    )
    levels = [config, config["backbone"], config["backbone"]["image_encoder"]]
    classes = [EMANetImageSegmenter, backbone_class, encoder_class]
    kept = 1 if built_backbone is not None else 2 if built_encoder is not None else 3
    given_to_built = sorted(
        key
        for key in overrides
        if key not in set(EMANetImageSegmenter.config_arguments()) | set(BASE_ARGUMENTS)
        and any(key in cls.config_arguments() for cls in classes[kept:])
    )
    if given_to_built:
        raise ValueError(f"Backbone arguments {given_to_built} given with a built backbone.")
    merge_overrides(
        levels[:kept], classes[:kept], backbone_class.shared_arguments, overrides, owner,
        renamed=encoder_class._renamed_arguments,
    )  # fmt: skip
    if built_backbone is None:
        encoder = built_encoder or encoder_class(**config["backbone"]["image_encoder"])
        built_backbone = backbone_class(**{**config["backbone"], "image_encoder": encoder})
    return EMANetImageSegmenter(**{**config, "backbone": built_backbone})


def nested_config(backbone_class, config):
    """A copy of `config` in the segmenter / backbone / encoder layout.

    0.1's layout (`EMANet`'s or `MobileEMANet`'s arguments, `"backbone"` the
    encoder's) is split by argument: the head's go to the backbone,
    `image_shape` to the encoder, and `classifier_channels`, which sized the
    auxiliary head too, also becomes `aux_channels`.
    """
    config = copy.deepcopy(dict(config))
    if "image_encoder" in config.get("backbone", {}):
        return config
    encoder = config.pop("backbone", {})
    if "image_shape" in config:
        encoder["image_shape"] = config.pop("image_shape")
    backbone = {"image_encoder": encoder}
    for key in backbone_class.config_arguments():
        if key in config and key != "image_encoder":
            shared = key in backbone_class.shared_arguments
            backbone[key] = config[key] if shared else config.pop(key)
            if key == "classifier_channels":
                config.setdefault("aux_channels", backbone[key])
    return {**config, "backbone": backbone}


def _built(overrides, key, model_class, config, level_class):
    """A built model given as `overrides[key]` (taken out), else None; a dict merges into config."""
    value = overrides.pop(key, None)
    if isinstance(value, model_class):
        return value
    if isinstance(value, keras.Model):
        raise ValueError(
            f"`{key}` must be {with_article(model_class.__name__)} or a dict of its arguments, "
            f"got {with_article(type(value).__name__)}."
        )
    if value is not None:
        check_keywords(f"{level_class.__name__} ({key}=...)", value, level_class.config_arguments())
        config[key].update(value)
    return None
