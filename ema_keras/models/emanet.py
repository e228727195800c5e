"""EMANet: a dilated ResNet, the EMA head, logits bilinearly resized to the image."""

import warnings

import keras

from ema_keras.layers.conv_bn import apply_conv_bn, batch_norm_settings, layer_seed
from ema_keras.layers.em_attention import EMAUnit
from ema_keras.layers.resize import BilinearResize
from ema_keras.models.class_info import checked_class_info
from ema_keras.models.dilated_resnet import DilatedResNet
from ema_keras.models.functional_model import BASE_ARGUMENTS, FunctionalModel, check_keywords
from ema_keras.models.presets import build_backbone, get_preset, weights_to_load

# Keyword arguments of `from_preset` that go to both the backbone and the head;
# the backbone's other arguments go to the backbone only.
_SHARED_ARGS = (
    "batch_norm_momentum", "batch_norm_epsilon", "batch_norm_synchronized", "image_shape", "seed",
    "dtype",
)  # fmt: skip


def apply_classifier(x, num_classes, *, dropout, name, seed=None, dtype=None):
    """Channel dropout (PyTorch's Dropout2d) and a 1x1 conv with bias."""
    x = keras.layers.SpatialDropout2D(
        dropout, seed=layer_seed(seed, f"{name}_dropout"), dtype=dtype, name=f"{name}_dropout"
    )(x)
    return keras.layers.Conv2D(
        num_classes,
        1,
        kernel_initializer=keras.initializers.GlorotUniform(layer_seed(seed, f"{name}_conv")),
        dtype=dtype,
        name=f"{name}_conv",
    )(x)


@keras.saving.register_keras_serializable(package="ema_keras")
class EMANet(FunctionalModel):
    """EMANet semantic segmenter (Li et al., ICCV 2019).

    Head, as in the official code: 3x3 conv-BN-ReLU from the backbone's P5 to
    `head_channels` (`pre_ema_*`), the EMA unit (`ema_unit`), 3x3 conv-BN-ReLU
    to `classifier_channels` (`post_ema_*`), channel dropout and a 1x1 conv
    with bias (`classifier_*`), then a bilinear resize to the input image
    (`logits`, float32 whatever the dtype policy).

    Options from mmsegmentation: `concat_input` adds a 3x3 conv-BN-ReLU over
    [P5, head output] before the classifier (`concat_input_*`); `aux_head`
    adds an FCN head on P4 (3x3 conv-BN-ReLU to `classifier_channels`,
    dropout, 1x1 conv: `aux_*`) and the model then returns
    `{"logits": ..., "aux_logits": ...}`, both (B, H, W, num_classes), so
    `compile(loss={...}, loss_weights={"logits": 1.0, "aux_logits": 0.4})`
    weights them.

    Input: RGB images as the backbone takes them; a `DilatedResNet` built
    now takes raw pixels 0..255 (`include_preprocessing=True`, its default;
    `expects_raw_pixels(model)` answers for any model, old files included).

    Args:
        backbone: a `DilatedResNet`, or any `keras.Model` with a
            `pyramid_outputs` dict (keras-hub's) holding "P5" (and "P4" for
            `aux_head`); the head reads its features from there.
        num_classes: number of classes (21 for PASCAL VOC).
        head_channels: channels of the EMA unit (512 in the paper, 256 for
            the paper's cheaper "EMANet (256)").
        classifier_channels: channels before the classifier (256).
        ema_num_bases, ema_num_iterations, ema_momentum,
        ema_normalize_average: the EMA unit's K, T, bases momentum, and
            whether the averaged bases are L2-normalised (see `EMALayer`).
        aux_head: add the auxiliary FCN head on stage 3 (P4).
        concat_input: add the conv over the concatenated P5 and head output.
        dropout: channel dropout rate before the classifiers.
        align_corners: bilinear upsampling convention (True = official).
        batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized: the
            head's BatchNorm settings; `None` for synchronized = synchronised
            under a strategy with more than one replica (stored resolved).
        image_shape: (H, W, 3); H and W may be None. (`input_shape`, its
            old name, still works with a DeprecationWarning.)
        seed: seed of the initializers (EMA bases included) and dropout.
        dtype: dtype policy of the head's layers (logits stay float32).
        class_names, palette: the classes' names and display colours ([r, g, b]
            0..255), one per class, or None; saved with the model for the tools
            that read it (`ema_keras.models.class_info`).
    """

    _renamed_arguments = {"input_shape": "image_shape"}

    def __init__(
        self,
        *,
        backbone,
        num_classes=21,
        head_channels=512,
        classifier_channels=256,
        ema_num_bases=64,
        ema_num_iterations=3,
        ema_momentum=0.9,
        ema_normalize_average=False,
        aux_head=False,
        concat_input=False,
        dropout=0.1,
        align_corners=True,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        batch_norm_synchronized=None,
        image_shape=(None, None, 3),
        seed=None,
        dtype=None,
        class_names=None,
        palette=None,
        **kwargs,
    ):
        levels = ("P4", "P5") if aux_head else ("P5",)
        pyramid = getattr(backbone, "pyramid_outputs", None)
        if not isinstance(backbone, keras.Model) or not isinstance(pyramid, dict):
            raise ValueError(
                "`backbone` must be a DilatedResNet (or a keras.Model with a `pyramid_outputs` "
                f"dict), got {type(backbone).__name__}."
            )
        if any(level not in pyramid for level in levels):
            raise ValueError(
                f"The backbone's `pyramid_outputs` ({sorted(pyramid)}) lack {list(levels)}."
            )
        for arg, value in (
            ("num_classes", num_classes),
            ("head_channels", head_channels),
            ("classifier_channels", classifier_channels),
        ):
            if int(value) < 1:
                raise ValueError(f"`{arg}` must be >= 1, got {value}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        class_names, palette = checked_class_info(class_names, palette, num_classes)
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )
        kwargs.setdefault("name", "emanet")

        # === Functional model ===
        conv_args = dict(batch_norm=batch_norm, seed=seed, dtype=dtype)
        inputs = keras.Input(shape=tuple(image_shape), name="image")
        own, wanted = keras.tree.flatten(backbone.output), keras.tree.flatten(pyramid)
        if len(own) == len(wanted) and all(a is b for a, b in zip(own, wanted)):
            features = backbone(inputs)  # a DilatedResNet: its outputs are its pyramid
        else:  # keras-hub's way for a backbone with other outputs
            pyramid_model = keras.Model(backbone.inputs, pyramid, name=f"{backbone.name}_pyramid")
            features = pyramid_model(inputs)
        x = apply_conv_bn(features["P5"], head_channels, 3, name="pre_ema", **conv_args)
        x = EMAUnit(
            num_bases=ema_num_bases,
            num_iterations=ema_num_iterations,
            momentum=ema_momentum,
            normalize_average=ema_normalize_average,
            batch_norm_momentum=batch_norm["momentum"],
            batch_norm_epsilon=batch_norm["epsilon"],
            batch_norm_synchronized=batch_norm["synchronized"],
            seed=layer_seed(seed, "ema_unit"),
            dtype=dtype,
            name="ema_unit",
        )(x)
        x = apply_conv_bn(x, classifier_channels, 3, name="post_ema", **conv_args)
        if concat_input:
            x = keras.layers.Concatenate(dtype=dtype, name="concat_input")([features["P5"], x])
            x = apply_conv_bn(x, classifier_channels, 3, name="concat_input", **conv_args)
        x = apply_classifier(
            x, num_classes, dropout=dropout, name="classifier", seed=seed, dtype=dtype
        )
        # float32 logits: the resize runs (and returns) in float32 under mixed precision.
        logits = BilinearResize(align_corners, dtype="float32", name="logits")([x, inputs])
        outputs = logits
        if aux_head:
            y = apply_conv_bn(features["P4"], classifier_channels, 3, name="aux", **conv_args)
            y = apply_classifier(
                y, num_classes, dropout=dropout, name="aux_classifier", seed=seed, dtype=dtype
            )
            aux_logits = BilinearResize(align_corners, dtype="float32", name="aux_logits")(
                [y, inputs]
            )
            outputs = {"logits": logits, "aux_logits": aux_logits}
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.head_channels = int(head_channels)
        self.classifier_channels = int(classifier_channels)
        self.ema_num_bases = int(ema_num_bases)
        self.ema_num_iterations = int(ema_num_iterations)
        self.ema_momentum = float(ema_momentum)
        self.ema_normalize_average = bool(ema_normalize_average)
        self.aux_head = bool(aux_head)
        self.concat_input = bool(concat_input)
        self.dropout = float(dropout)
        self.align_corners = bool(align_corners)
        self.batch_norm_momentum = batch_norm["momentum"]
        self.batch_norm_epsilon = batch_norm["epsilon"]
        self.batch_norm_synchronized = batch_norm["synchronized"]
        self.image_shape = tuple(image_shape)
        self.seed = seed
        self.class_names = class_names
        self.palette = palette

    @classmethod
    def from_preset(cls, preset, /, *, load_weights=None, **overrides):
        """Builds a preset (see `ema_keras.models.presets.PRESETS`).

        `overrides` replace the preset's arguments; an unknown keyword raises a
        `TypeError` naming it. Backbone arguments (`depth`, `block_counts`,
        `stem`, `output_stride`, `multi_grid`, `width`, `use_conv_bias`) go
        to the backbone, as does `include_preprocessing` (False: ImageNet-normalised
        input instead of raw pixels); BatchNorm settings, `image_shape`, `seed`
        and `dtype` go to both; the rest to `EMANet`. `backbone=` may also be a built
        backbone or a dict of `DilatedResNet` arguments.

        `load_weights`: `None` (default) loads the preset's weights file if it
        names one and otherwise leaves the model randomly initialised; `True`
        requires weights; `False` never loads. Weights are loaded with
        `ema_keras.weights.load_model_weights`, so overrides that change the
        weights' shapes (e.g. `num_classes`) need `load_weights=False`.

            model = EMANet.from_preset("emanet_resnet101_os8_voc", num_classes=19)
        """
        backbone_args = DilatedResNet.config_arguments()
        renamed = {**cls._renamed_arguments, **DilatedResNet._renamed_arguments}
        accepted = set(cls.config_arguments() + backbone_args + list(BASE_ARGUMENTS))
        if "weights" in overrides:
            raise TypeError(
                "EMANet.from_preset got an unexpected keyword argument 'weights': use "
                "load_weights=True with a preset that names a weights file, or "
                "ema_keras.weights.load_model_weights(model, path)."
            )
        given = [key for key in overrides if key not in renamed]
        check_keywords("EMANet.from_preset", given, sorted(accepted | {"load_weights"}))
        config = get_preset(preset)
        weights = weights_to_load(preset, load_weights)
        for old in set(renamed) & set(overrides):
            warnings.warn(
                f"EMANet.from_preset({old}=...) is deprecated; use {renamed[old]}=...",
                DeprecationWarning,
                stacklevel=2,
            )
        overrides = {renamed.get(key, key): value for key, value in overrides.items()}
        backbone = build_backbone(DilatedResNet, config["backbone"], overrides, _SHARED_ARGS)
        config.update(overrides, backbone=backbone)
        model = cls(**config)
        if weights is not None:
            # ema_keras.weights builds on the models; imported here, when used.
            from ema_keras.weights import load_model_weights

            load_model_weights(model, weights)
        return model
