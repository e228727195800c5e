"""MobileEMANet: 0.1's phone segmenter class, the layout of the `.keras` files it saved.

The model family is `EMANetImageSegmenter` on a `MobileEMANetBackbone` (which
`MobileEMANet.from_preset` builds, with a DeprecationWarning); this class
stays so that files saved by 0.1 load, predict and train as they did.
"""

import keras

from ema_keras.layers.conv_bn import batch_norm_settings, layer_seed
from ema_keras.layers.resize import BilinearResize
from ema_keras.models.class_info import checked_class_info
from ema_keras.models.emanet_backbone import check_image_encoder, encoder_pyramid
from ema_keras.models.functional_model import check_counts, check_dropout
from ema_keras.models.legacy_segmenter import LegacySegmenter
from ema_keras.models.mobile_emanet_backbone import apply_mobile_ema_head
from ema_keras.models.mobilenet_v3 import MobileNetV3Backbone
from ema_keras.models.segmenter_base import apply_classifier
from ema_keras.serialization import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileEMANet(LegacySegmenter):
    """Deprecated: 0.1's MobileEMANet, kept for its files; build `EMANetImageSegmenter`.

    Head (`head_*`, `ema_unit`, `classifier_*`): `MobileEMANetBackbone`'s light
    EMA head (its docstring gives the measurements behind it) and LR-ASPP's
    fusion, all in this one model: the head's map resized to P3 and
    classified, plus a 1x1 classifier on P3, summed, then a bilinear resize
    to the image (`logits`, float32).

    Input: raw RGB pixels 0..255 with a `MobileNetV3Backbone` built now
    (`include_preprocessing=True`, its default), see `expects_raw_pixels`.

    Every op (conv, depthwise conv, mean, hard-swish, batch-matmul, softmax,
    L2-normalisation, bilinear resize, add, mul) is a TFLite builtin that
    runs in int8.

    Args:
        backbone: a `MobileNetV3Backbone` (or a keras.Model with a
            `pyramid_outputs` dict holding "P3" and "P5").
        num_classes: number of classes.
        head_channels: width of the projection and the EMA unit.
        ema_num_bases, ema_num_iterations, ema_momentum: the EMA unit's K, T
            and bases momentum.
        dropout: channel dropout before the high-level classifier.
        align_corners: bilinear upsampling convention.
        batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized: the
            head's BatchNorm settings.
        image_shape: (H, W, 3); H and W may be None.
        seed: seed of the initializers and dropout.
        dtype: dtype policy of the head's layers (logits stay float32).
        class_names, palette: the classes' names and display colours ([r, g, b]
            0..255), one per class, or None; saved with the model for the tools
            that read it (`ema_keras.models.class_info`).
    """

    architecture = "mobile_emanet"
    successor = (
        "EMANetImageSegmenter(backbone=MobileEMANetBackbone(image_encoder=...))"
    )
    # It classifies twice, the EMA head's map and P3's low-level features, and sums.
    classifier_layer_names = ("classifier_high", "classifier_low")
    backbone_class = MobileNetV3Backbone
    # `from_preset` keywords that go to both the backbone and the head; not the
    # epsilon: the backbone's is keras.applications' 1e-3, the head's 1e-5.
    shared_arguments = (
        "batch_norm_momentum", "batch_norm_synchronized", "image_shape", "seed", "dtype",
    )  # fmt: skip

    def __init__(
        self,
        *,
        backbone,
        num_classes=21,
        head_channels=128,
        ema_num_bases=16,
        ema_num_iterations=1,
        ema_momentum=0.9,
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
        check_counts(num_classes=num_classes, head_channels=head_channels)
        check_dropout(dropout)
        class_names, palette = checked_class_info(class_names, palette, num_classes)
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )
        kwargs.setdefault("name", "mobile_emanet")

        # === Functional model ===
        inputs = keras.Input(shape=tuple(image_shape), name="image")
        check_image_encoder(backbone, ("P3", "P5"), "MobileEMANet", "backbone")
        features = encoder_pyramid(backbone, inputs)
        x = apply_mobile_ema_head(
            features["P5"], features["P3"], head_channels, ema_num_bases=ema_num_bases,
            ema_num_iterations=ema_num_iterations, ema_momentum=ema_momentum,
            align_corners=align_corners, batch_norm=batch_norm, seed=seed, dtype=dtype,
        )  # fmt: skip
        x = keras.layers.SpatialDropout2D(
            dropout, seed=layer_seed(seed, "head_dropout"), dtype=dtype, name="head_dropout"
        )(x)
        high = apply_classifier(x, num_classes, name="classifier_high", seed=seed, dtype=dtype)
        low = apply_classifier(
            features["P3"], num_classes, name="classifier_low", seed=seed, dtype=dtype
        )
        x = keras.layers.Add(dtype=dtype, name="classifier_add")([high, low])
        logits = BilinearResize(align_corners, dtype="float32", name="logits")([x, inputs])
        super().__init__(inputs=inputs, outputs=logits, dtype=dtype, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.head_channels = int(head_channels)
        self.ema_num_bases = int(ema_num_bases)
        self.ema_num_iterations = int(ema_num_iterations)
        self.ema_momentum = float(ema_momentum)
        self.dropout = float(dropout)
        self.align_corners = bool(align_corners)
        self.batch_norm_momentum = batch_norm["momentum"]
        self.batch_norm_epsilon = batch_norm["epsilon"]
        self.batch_norm_synchronized = batch_norm["synchronized"]
        self.image_shape = tuple(image_shape)
        self.seed = seed
        self.class_names = class_names
        self.palette = palette
