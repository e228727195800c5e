"""EMANetBackbone: an image encoder and the paper's EMA head, up to the classifier."""

import keras

from ema_keras.layers.conv_bn import apply_conv_bn, batch_norm_settings, layer_seed
from ema_keras.layers.em_attention import EMAUnit
from ema_keras.models.dilated_resnet import DilatedResNet
from ema_keras.models.functional_model import FunctionalModel, check_counts
from ema_keras.serialization import PACKAGE

# The output holding the head's features; the encoder's pyramid levels sit beside it.
FEATURES = "features"


def check_image_encoder(image_encoder, levels, owner, argument="image_encoder"):
    """Raises a ValueError unless `image_encoder` is a keras.Model with those pyramid levels."""
    pyramid = getattr(image_encoder, "pyramid_outputs", None)
    if not isinstance(image_encoder, keras.Model) or not isinstance(pyramid, dict):
        raise ValueError(
            f"{owner}'s `{argument}` must be a keras.Model with a `pyramid_outputs` dict "
            f"(a DilatedResNet, a MobileNetV3Backbone, a keras-hub backbone), "
            f"got {type(image_encoder).__name__}."
        )
    if any(level not in pyramid for level in levels):
        raise ValueError(
            f"The image encoder's `pyramid_outputs` ({sorted(pyramid)}) lack {list(levels)}."
        )


def encoder_pyramid(image_encoder, inputs):
    """The encoder's `pyramid_outputs` computed on `inputs` (`check_image_encoder` it first).

    A `DilatedResNet` or `MobileNetV3Backbone` returns its pyramid; any other
    `keras.Model` with a `pyramid_outputs` dict (keras-hub's backbones) is
    wrapped in a model returning it.
    """
    pyramid = image_encoder.pyramid_outputs
    own, wanted = keras.tree.flatten(image_encoder.output), keras.tree.flatten(pyramid)
    if len(own) == len(wanted) and all(a is b for a, b in zip(own, wanted)):
        # The encoder returns its pyramid (perhaps not as a dict): named as the pyramid.
        return keras.tree.pack_sequence_as(pyramid, keras.tree.flatten(image_encoder(inputs)))
    pyramid_model = keras.Model(
        image_encoder.inputs, pyramid, name=f"{image_encoder.name}_pyramid"
    )
    return pyramid_model(inputs)


def apply_ema_head(
    p5, head_channels, classifier_channels, *, ema_num_bases, ema_num_iterations, ema_momentum,
    ema_normalize_average, concat_input, batch_norm, seed, dtype,
):  # fmt: skip
    """The paper's head on the encoder's P5 (see `EMANetBackbone`), its layers named as saved.

    One home for the layers both layouts hold: `EMANetBackbone`, and 0.1's
    `EMANet`, whose files name them alike.
    """
    conv_args = dict(batch_norm=batch_norm, seed=seed, dtype=dtype)
    x = apply_conv_bn(p5, head_channels, 3, name="pre_ema", **conv_args)
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
        x = keras.layers.Concatenate(dtype=dtype, name="concat_input")([p5, x])
        x = apply_conv_bn(x, classifier_channels, 3, name="concat_input", **conv_args)
    return x


class EMAHeadBackbone(FunctionalModel):
    """What the EMANet backbones share: an encoder, an EMA head, outputs by name.

    A backbone's output is a dict: `"features"`, the head's features (what
    the segmenter classifies), beside the encoder's pyramid levels (`"P2"`..
    `"P5"`, what an auxiliary or low-level branch reads). A subclass sets
    `architecture` (its name in the preset data), `image_encoder_class` (the
    encoder its presets describe), `low_level_feature_key` (the level the
    segmenter also classifies, LR-ASPP-style, or None) and `shared_arguments`
    (keywords of `from_preset` that also go to the encoder).
    """

    architecture = None
    image_encoder_class = None
    low_level_feature_key = None
    shared_arguments = ()

    @property
    def pyramid_outputs(self):
        """The encoder's pyramid levels, as this backbone outputs them (keras-hub's name)."""
        return {name: value for name, value in self.output.items() if name != FEATURES}

    @property
    def output_stride(self):
        """The encoder's output stride (the head's features are at 1/stride of the image)."""
        return self.image_encoder.output_stride


@keras.saving.register_keras_serializable(package=PACKAGE)
class EMANetBackbone(EMAHeadBackbone):
    """A dilated ResNet (or any encoder with a pyramid) and the paper's EMA head.

    Head, as in the official code: 3x3 conv-BN-ReLU from the encoder's P5 to
    `head_channels` (`pre_ema_*`), the EMA unit (`ema_unit`), 3x3
    conv-BN-ReLU to `classifier_channels` (`post_ema_*`); with
    `concat_input` (mmsegmentation's option), a 3x3 conv-BN-ReLU over
    [P5, head output] (`concat_input_*`). Outputs `{"features": (B, h, w,
    classifier_channels), "P2": ..., "P5": ...}`, the pyramid the encoder's.

    Args:
        image_encoder: a `DilatedResNet`, or any `keras.Model` with a
            `pyramid_outputs` dict (keras-hub's) holding "P5".
        head_channels: channels of the EMA unit (512 in the paper, 256 for
            the paper's cheaper "EMANet (256)").
        classifier_channels: channels of the features (256).
        ema_num_bases, ema_num_iterations, ema_momentum,
        ema_normalize_average: the EMA unit's K, T, bases momentum, and
            whether the averaged bases are L2-normalised (see `EMALayer`).
        concat_input: add the conv over the concatenated P5 and head output.
        batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized: the
            head's BatchNorm settings; `None` for synchronized = synchronised
            under a strategy with more than one replica (stored resolved).
        seed: seed of the initializers (EMA bases included).
        dtype: dtype policy of the head's layers.
    """

    architecture = "emanet"
    image_encoder_class = DilatedResNet
    shared_arguments = (
        "batch_norm_momentum", "batch_norm_epsilon", "batch_norm_synchronized", "seed", "dtype",
    )  # fmt: skip

    def __init__(
        self,
        *,
        image_encoder,
        head_channels=512,
        classifier_channels=256,
        ema_num_bases=64,
        ema_num_iterations=3,
        ema_momentum=0.9,
        ema_normalize_average=False,
        concat_input=False,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        batch_norm_synchronized=None,
        seed=None,
        dtype=None,
        **kwargs,
    ):
        check_counts(head_channels=head_channels, classifier_channels=classifier_channels)
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )
        kwargs.setdefault("name", "emanet_backbone")

        # === Functional model ===
        check_image_encoder(image_encoder, ("P5",), type(self).__name__)
        inputs = keras.Input(shape=tuple(image_encoder.input.shape[1:]), name="image")
        pyramid = encoder_pyramid(image_encoder, inputs)
        x = apply_ema_head(
            pyramid["P5"], head_channels, classifier_channels, ema_num_bases=ema_num_bases,
            ema_num_iterations=ema_num_iterations, ema_momentum=ema_momentum,
            ema_normalize_average=ema_normalize_average, concat_input=concat_input,
            batch_norm=batch_norm, seed=seed, dtype=dtype,
        )  # fmt: skip
        super().__init__(inputs=inputs, outputs={FEATURES: x, **pyramid}, dtype=dtype, **kwargs)

        # === Config ===
        self.image_encoder = image_encoder
        self.head_channels = int(head_channels)
        self.classifier_channels = int(classifier_channels)
        self.ema_num_bases = int(ema_num_bases)
        self.ema_num_iterations = int(ema_num_iterations)
        self.ema_momentum = float(ema_momentum)
        self.ema_normalize_average = bool(ema_normalize_average)
        self.concat_input = bool(concat_input)
        self.batch_norm_momentum = batch_norm["momentum"]
        self.batch_norm_epsilon = batch_norm["epsilon"]
        self.batch_norm_synchronized = batch_norm["synchronized"]
        self.seed = seed
