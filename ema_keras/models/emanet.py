"""EMANet: a dilated ResNet, the EMA head, logits bilinearly resized to the image."""

import keras

from ema_keras.layers.conv_bn import apply_conv_bn, batch_norm_settings, layer_seed
from ema_keras.layers.em_attention import EMAUnit
from ema_keras.layers.resize import BilinearResize
from ema_keras.models.dilated_resnet import DilatedResNet
from ema_keras.models.presets import get_preset

# Keyword arguments of `from_preset` that go to the backbone, and those that
# go to both the backbone and the head.
_BACKBONE_ARGS = (
    "depth", "block_counts", "stem", "output_stride", "multi_grid", "width", "use_conv_bias"
)  # fmt: skip
_SHARED_ARGS = (
    "batch_norm_momentum", "batch_norm_epsilon", "batch_norm_synchronized", "seed", "dtype"
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
class EMANet(keras.Model):
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

    Args:
        backbone: a `DilatedResNet`.
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
        input_shape: (H, W, 3); H and W may be None.
        seed: seed of the initializers (EMA bases included) and dropout.
        dtype: dtype policy of the head's layers (logits stay float32).
    """

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
        input_shape=(None, None, 3),
        seed=None,
        dtype=None,
        **kwargs,
    ):
        if not isinstance(backbone, DilatedResNet):
            raise ValueError(f"`backbone` must be a DilatedResNet, got {type(backbone).__name__}.")
        for arg, value in (
            ("num_classes", num_classes),
            ("head_channels", head_channels),
            ("classifier_channels", classifier_channels),
        ):
            if int(value) < 1:
                raise ValueError(f"`{arg}` must be >= 1, got {value}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )
        kwargs.setdefault("name", "emanet")

        # === Functional model ===
        conv_args = dict(batch_norm=batch_norm, seed=seed, dtype=dtype)
        inputs = keras.Input(shape=tuple(input_shape), name="image")
        features = backbone(inputs)
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
        self.image_shape = tuple(input_shape)
        self.seed = seed

    @classmethod
    def from_preset(cls, name, **overrides):
        """Builds a preset (see `ema_keras.models.presets.PRESETS`), randomly initialised.

        `overrides` replace the preset's arguments. Backbone arguments
        (`depth`, `block_counts`, `stem`, `output_stride`, `multi_grid`,
        `width`, `use_conv_bias`) go to the backbone; BatchNorm settings,
        `seed` and `dtype` go to both; the rest to `EMANet`.
        `backbone=` may also be a `DilatedResNet` or a dict of its arguments.

            model = EMANet.from_preset("emanet_resnet101_os8_voc", num_classes=19)
        """
        config = get_preset(name)
        backbone = overrides.pop("backbone", None)
        backbone_overrides = {
            key: overrides.pop(key) for key in list(overrides) if key in _BACKBONE_ARGS
        }
        if isinstance(backbone, DilatedResNet):
            if backbone_overrides:
                raise ValueError(
                    f"Backbone arguments {sorted(backbone_overrides)} given with a built backbone."
                )
        else:
            shared = {key: value for key, value in overrides.items() if key in _SHARED_ARGS}
            backbone = DilatedResNet(
                **{**config["backbone"], **(backbone or {}), **backbone_overrides, **shared}
            )
        config.update(overrides, backbone=backbone)
        return cls(**config)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "head_channels": self.head_channels,
            "classifier_channels": self.classifier_channels,
            "ema_num_bases": self.ema_num_bases,
            "ema_num_iterations": self.ema_num_iterations,
            "ema_momentum": self.ema_momentum,
            "ema_normalize_average": self.ema_normalize_average,
            "aux_head": self.aux_head,
            "concat_input": self.concat_input,
            "dropout": self.dropout,
            "align_corners": self.align_corners,
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
            "batch_norm_synchronized": self.batch_norm_synchronized,
            "input_shape": self.image_shape,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
