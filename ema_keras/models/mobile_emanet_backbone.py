"""MobileEMANetBackbone: MobileNetV3 and a light EMA head, full-integer int8 friendly."""

import keras

from ema_keras.layers.conv_bn import apply_conv_bn, batch_norm_settings, layer_seed
from ema_keras.layers.em_attention import EMAUnit
from ema_keras.layers.resize import BilinearResize
from ema_keras.models.emanet_backbone import (
    FEATURES,
    EMAHeadBackbone,
    check_image_encoder,
    encoder_pyramid,
)
from ema_keras.models.functional_model import check_counts
from ema_keras.models.mobilenet_v3 import MobileNetV3Backbone
from ema_keras.serialization import PACKAGE


def apply_mobile_ema_head(
    p5, p3, head_channels, *, ema_num_bases, ema_num_iterations, ema_momentum, align_corners,
    batch_norm, seed, dtype,
):  # fmt: skip
    """The light head on P5, resized to P3 (see `MobileEMANetBackbone`), its layers named as saved.

    One home for the layers both layouts hold: `MobileEMANetBackbone`, and
    0.1's `MobileEMANet`, whose files name them alike.
    """
    x = apply_conv_bn(
        p5, head_channels, 1, name="head", batch_norm=batch_norm, seed=seed, dtype=dtype
    )
    x = EMAUnit(
        num_bases=ema_num_bases,
        num_iterations=ema_num_iterations,
        momentum=ema_momentum,
        batch_norm_momentum=batch_norm["momentum"],
        batch_norm_epsilon=batch_norm["epsilon"],
        batch_norm_synchronized=batch_norm["synchronized"],
        seed=layer_seed(seed, "ema_unit"),
        dtype=dtype,
        name="ema_unit",
    )(x)
    return BilinearResize(align_corners, dtype=dtype, name="head_resize")([x, p3])


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileEMANetBackbone(EMAHeadBackbone):
    """EMANet for phones: MobileNetV3 and a light EMA head (`head_*`, `ema_unit`).

    - a 1x1 conv-BN-ReLU projects the encoder's P5 (960 / 576 channels at
      its output stride: 1/16 in the Large preset, 1/32 in the Small one,
      where 1/16 missed the 40 ms int8 goal) to `head_channels` (128): a 3x3
      conv there would cost more than the whole Small trunk, and 128
      channels is LR-ASPP's width;
    - the EMA unit with few bases and one iteration (K=16, T=1 by default).
      Measured alone on the 33x33x128 map of a 513x513 image (Keras,
      float32, one thread, AMD EPYC): K=16/T=1 1.3 ms, K=32/T=2 1.7 ms,
      K=64/T=3 (the paper's) 3.1 ms. All are small next to the trunk, so
      the choice is for int8: every iteration adds a softmax and an
      L2-normalisation that are requantised, and ~1,000 pixels leave 64
      bases sparsely used. It supplies the global context LR-ASPP gets
      from its pooling branch, so that branch is left out;
    - the head's map bilinearly resized to P3 (1/8, `head_resize`): the
      segmenter classifies it and P3's low-level features
      (`low_level_feature_key`) and sums them, LR-ASPP's fusion.

    Outputs `{"features": (B, h3, w3, head_channels), "P3": ..., "P5": ...}`.
    Every op is a TFLite builtin that runs in int8.

    Args:
        image_encoder: a `MobileNetV3Backbone` (or a keras.Model with a
            `pyramid_outputs` dict holding "P3" and "P5").
        head_channels: width of the projection and the EMA unit.
        ema_num_bases, ema_num_iterations, ema_momentum: the EMA unit's K, T
            and bases momentum.
        align_corners: bilinear resize convention of `head_resize`.
        batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized: the
            head's BatchNorm settings.
        seed: seed of the initializers.
        dtype: dtype policy of the head's layers.
    """

    architecture = "mobile_emanet"
    image_encoder_class = MobileNetV3Backbone
    low_level_feature_key = "P3"
    # Not the epsilon: the encoder's is keras.applications' 1e-3, the head's 1e-5.
    shared_arguments = ("batch_norm_momentum", "batch_norm_synchronized", "seed", "dtype")

    def __init__(
        self,
        *,
        image_encoder,
        head_channels=128,
        ema_num_bases=16,
        ema_num_iterations=1,
        ema_momentum=0.9,
        align_corners=True,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        batch_norm_synchronized=None,
        seed=None,
        dtype=None,
        **kwargs,
    ):
        check_counts(head_channels=head_channels)
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )
        kwargs.setdefault("name", "mobile_emanet_backbone")

        # === Functional model ===
        check_image_encoder(image_encoder, ("P3", "P5"), type(self).__name__)
        inputs = keras.Input(shape=tuple(image_encoder.input.shape[1:]), name="image")
        pyramid = encoder_pyramid(image_encoder, inputs)
        x = apply_mobile_ema_head(
            pyramid["P5"], pyramid["P3"], head_channels, ema_num_bases=ema_num_bases,
            ema_num_iterations=ema_num_iterations, ema_momentum=ema_momentum,
            align_corners=align_corners, batch_norm=batch_norm, seed=seed, dtype=dtype,
        )  # fmt: skip
        super().__init__(inputs=inputs, outputs={FEATURES: x, **pyramid}, dtype=dtype, **kwargs)

        # === Config ===
        self.image_encoder = image_encoder
        self.head_channels = int(head_channels)
        self.ema_num_bases = int(ema_num_bases)
        self.ema_num_iterations = int(ema_num_iterations)
        self.ema_momentum = float(ema_momentum)
        self.align_corners = bool(align_corners)
        self.batch_norm_momentum = batch_norm["momentum"]
        self.batch_norm_epsilon = batch_norm["epsilon"]
        self.batch_norm_synchronized = batch_norm["synchronized"]
        self.seed = seed
