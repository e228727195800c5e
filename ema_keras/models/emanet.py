"""EMANet: 0.1's segmenter class, the layout of the `.keras` files it saved.

The model family is `EMANetImageSegmenter` on an `EMANetBackbone` (which
`EMANet.from_preset` builds, with a DeprecationWarning); this class stays so
that files saved by 0.1 load, predict and train as they did: the head's
layers sit in the segmenter itself, beside the `DilatedResNet`.
"""

import keras

from ema_keras.layers.conv_bn import apply_conv_bn, batch_norm_settings, layer_seed
from ema_keras.layers.resize import BilinearResize
from ema_keras.models.class_info import checked_class_info
from ema_keras.models.dilated_resnet import DilatedResNet
from ema_keras.models.emanet_backbone import (
    apply_ema_head,
    check_image_encoder,
    encoder_pyramid,
)
from ema_keras.models.functional_model import check_counts, check_dropout
from ema_keras.models.legacy_segmenter import LegacySegmenter
from ema_keras.models.segmenter_base import apply_classifier
from ema_keras.serialization import PACKAGE


def apply_dropout_classifier(x, num_classes, *, dropout, name, seed=None, dtype=None):
    """Channel dropout (PyTorch's Dropout2d) and a 1x1 conv with bias: `{name}_dropout`, `_conv`."""
    x = keras.layers.SpatialDropout2D(
        dropout, seed=layer_seed(seed, f"{name}_dropout"), dtype=dtype, name=f"{name}_dropout"
    )(x)
    return apply_classifier(x, num_classes, name=f"{name}_conv", seed=seed, dtype=dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class EMANet(LegacySegmenter):
    """Deprecated: 0.1's EMANet, kept for its files; build `EMANetImageSegmenter`.

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

    architecture = "emanet"
    successor = "EMANetImageSegmenter(backbone=EMANetBackbone(image_encoder=DilatedResNet(...)))"
    backbone_class = DilatedResNet
    classifier_layer_names = ("classifier_conv", "aux_classifier_conv")
    # `from_preset` keywords that go to both the backbone and the head.
    shared_arguments = (
        "batch_norm_momentum", "batch_norm_epsilon", "batch_norm_synchronized", "image_shape",
        "seed", "dtype",
    )  # fmt: skip
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
        self.warn_if_built_directly()
        levels = ("P4", "P5") if aux_head else ("P5",)
        check_counts(
            num_classes=num_classes,
            head_channels=head_channels,
            classifier_channels=classifier_channels,
        )
        check_dropout(dropout)
        class_names, palette = checked_class_info(class_names, palette, num_classes)
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )
        kwargs.setdefault("name", "emanet")

        # === Functional model ===
        conv_args = dict(batch_norm=batch_norm, seed=seed, dtype=dtype)
        inputs = keras.Input(shape=tuple(image_shape), name="image")
        check_image_encoder(backbone, levels, "EMANet", "backbone")
        features = encoder_pyramid(backbone, inputs)
        x = apply_ema_head(
            features["P5"], head_channels, classifier_channels, ema_num_bases=ema_num_bases,
            ema_num_iterations=ema_num_iterations, ema_momentum=ema_momentum,
            ema_normalize_average=ema_normalize_average, concat_input=concat_input,
            batch_norm=batch_norm, seed=seed, dtype=dtype,
        )  # fmt: skip
        x = apply_dropout_classifier(
            x, num_classes, dropout=dropout, name="classifier", seed=seed, dtype=dtype
        )
        # float32 logits: the resize runs (and returns) in float32 under mixed precision.
        logits = BilinearResize(align_corners, dtype="float32", name="logits")([x, inputs])
        outputs = logits
        if aux_head:
            y = apply_conv_bn(features["P4"], classifier_channels, 3, name="aux", **conv_args)
            y = apply_dropout_classifier(
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
