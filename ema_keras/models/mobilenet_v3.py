"""MobileNetV3-Large / -Small backbone with `keras.applications` layer names, dilated tail."""

import keras

from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ema_keras.layers.batch_norm import SyncBatchNormalization
from ema_keras.layers.conv_bn import batch_norm_settings, layer_seed
from ema_keras.layers.image_normalization import ImageNormalization
from ema_keras.layers.initializers import conv_kernel_initializer
from ema_keras.models.functional_model import FunctionalModel
from ema_keras.serialization import PACKAGE
from ema_keras.weights.keras_files import read_legacy_h5
from ema_keras.weights.layer_weights import assign_layer_weights

OUTPUT_STRIDES = (8, 16, 32)
SE_RATIO = 0.25
# (expansion, output channels, kernel, stride, squeeze-excite, activation) of
# each inverted residual block, as in keras.applications (not minimalistic).
BLOCKS = {
    "large": (
        (1, 16, 3, 1, False, "relu"),
        (4, 24, 3, 2, False, "relu"),
        (3, 24, 3, 1, False, "relu"),
        (3, 40, 5, 2, True, "relu"),
        (3, 40, 5, 1, True, "relu"),
        (3, 40, 5, 1, True, "relu"),
        (6, 80, 3, 2, False, "hard_swish"),
        (2.5, 80, 3, 1, False, "hard_swish"),
        (2.3, 80, 3, 1, False, "hard_swish"),
        (2.3, 80, 3, 1, False, "hard_swish"),
        (6, 112, 3, 1, True, "hard_swish"),
        (6, 112, 3, 1, True, "hard_swish"),
        (6, 160, 5, 2, True, "hard_swish"),
        (6, 160, 5, 1, True, "hard_swish"),
        (6, 160, 5, 1, True, "hard_swish"),
    ),
    "small": (
        (1, 16, 3, 2, True, "relu"),
        (72 / 16, 24, 3, 2, False, "relu"),
        (88 / 24, 24, 3, 1, False, "relu"),
        (4, 40, 5, 2, True, "hard_swish"),
        (6, 40, 5, 1, True, "hard_swish"),
        (6, 40, 5, 1, True, "hard_swish"),
        (3, 48, 5, 1, True, "hard_swish"),
        (3, 48, 5, 1, True, "hard_swish"),
        (6, 96, 5, 2, True, "hard_swish"),
        (6, 96, 5, 1, True, "hard_swish"),
        (6, 96, 5, 1, True, "hard_swish"),
    ),
}


def make_divisible(value, divisor=8):
    """keras.applications' `_depth`: `value` rounded to a multiple of 8, at most 10% down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def block_strides(blocks, output_stride):
    """(stride, dilation) of each block's depthwise conv for `output_stride`.

    As TF-slim's MobileNet (and DeepLab's): once the running stride reaches
    `output_stride`, a stride-2 block runs at stride 1 with the current rate
    and the rate doubles for the blocks after it. The stem reduces by 2.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"`output_stride` must be one of {OUTPUT_STRIDES}, got {output_stride}.")
    scheme, current, rate = [], 2, 1
    for block in blocks:
        stride = block[3]
        if stride > 1 and current >= output_stride:
            scheme.append((1, rate))
            rate *= stride
        else:
            scheme.append((stride, rate))
            current *= stride
    return scheme


class _Builder:
    """Layer factories sharing the BatchNorm settings, seed and dtype."""

    def __init__(self, batch_norm, seed, dtype):
        self.batch_norm, self.seed, self.dtype = batch_norm, seed, dtype

    def conv(self, x, filters, name, kernel_size=1, strides=1, use_bias=False):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=use_bias,
            kernel_initializer=conv_kernel_initializer(layer_seed(self.seed, name)),
            dtype=self.dtype,
            name=name,
        )(x)

    def bn(self, x, name):
        return SyncBatchNormalization(**self.batch_norm, dtype=self.dtype, name=name)(x)

    def act(self, x, activation, name):
        return keras.layers.Activation(activation, dtype=self.dtype, name=name)(x)


def apply_squeeze_excite(x, filters, prefix, build):
    """keras.applications' SE: global mean, 1x1 ReLU, 1x1 hard sigmoid, multiply."""
    s = keras.layers.GlobalAveragePooling2D(
        keepdims=True, dtype=build.dtype, name=f"{prefix}squeeze_excite_avg_pool"
    )(x)
    s = build.conv(s, make_divisible(filters * SE_RATIO), f"{prefix}squeeze_excite_conv",
                   use_bias=True)  # fmt: skip
    s = build.act(s, "relu", f"{prefix}squeeze_excite_relu")
    s = build.conv(s, filters, f"{prefix}squeeze_excite_conv_1", use_bias=True)
    s = build.act(s, "hard_sigmoid", f"{prefix}squeeze_excite_hard_sigmoid")
    return keras.layers.Multiply(dtype=build.dtype, name=f"{prefix}squeeze_excite_mul")([x, s])


def apply_inverted_residual_block(x, block, index, *, stride, dilation, build):
    """Expand 1x1, depthwise (strided or dilated), optional SE, project 1x1, residual."""
    expansion, filters, kernel_size, _, squeeze_excite, activation = block
    prefix = f"expanded_conv_{index}_" if index else "expanded_conv_"
    shortcut, in_filters = x, x.shape[-1]
    expanded = make_divisible(in_filters * expansion)
    if index:
        x = build.conv(x, expanded, f"{prefix}expand")
        x = build.bn(x, f"{prefix}expand_bn")
        x = build.act(x, activation, f"{prefix}expand_{activation}")
    # "same" padding equals keras.applications' `correct_pad` + "valid" at stride 2.
    x = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=stride,
        dilation_rate=dilation,
        padding="same",
        use_bias=False,
        depthwise_initializer=conv_kernel_initializer(layer_seed(build.seed, f"{prefix}dw")),
        dtype=build.dtype,
        name=f"{prefix}depthwise",
    )(x)
    x = build.bn(x, f"{prefix}depthwise_bn")
    x = build.act(x, activation, f"{prefix}depthwise_{activation}")
    if squeeze_excite:
        x = apply_squeeze_excite(x, expanded, prefix, build)
    x = build.conv(x, filters, f"{prefix}project")
    x = build.bn(x, f"{prefix}project_bn")
    if stride == 1 and in_filters == filters:
        x = keras.layers.Add(dtype=build.dtype, name=f"{prefix}add")([shortcut, x])
    return x


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileNetV3Backbone(FunctionalModel):
    """MobileNetV3 trunk (Howard et al., 2019) up to its last 1x1 conv, dilated tail.

    Maps (B, H, W, 3) RGB images, raw pixels 0..255 (ImageNet-normalised with
    `include_preprocessing=False`, as `DilatedResNet`), to the pyramid
    `{"P2", "P3", "P4", "P5"}` (also `pyramid_outputs`): the last block at
    stride 4, 8 and 16 and the final 1x1 conv (960 channels for Large, 576
    for Small) at stride 32, or at `output_stride` when that is smaller
    (a 513x513 image gives 33x33 P5 at output stride 16).

    `keras.applications` MobileNetV3 expects pixels in [-1, 1], so its
    ImageNet weights see what they were trained on: raw pixels go there
    directly (`ImageNormalization("unit_range")`, `pixels_to_unit_range`,
    float32), normalised input through a `Rescaling` (`imagenet_to_unit_range`).
    Neither has weights.
    Layer names and shapes are those of
    `keras.applications.MobileNetV3Large/Small(include_top=False)`, so its
    `.h5` weights load by name (`load_imagenet_weights`) and the parameter
    counts are equal (Large 2,996,352, Small 939,120). Dilation replaces
    the last strides (TF-slim's rule, see `block_strides`); the channel
    counts of the tail are not halved (the paper's "reduced tail" would
    break the weight shapes).

    Args:
        variant: "large" or "small".
        output_stride: 8, 16 or 32.
        batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized:
            Keras convention; epsilon 1e-3 as keras.applications.
        image_shape: (H, W, 3); H and W may be None.
        include_preprocessing: take raw RGB pixels (0..255); False takes
            ImageNet-normalised images. A `.keras` file saved before this
            argument existed loads with False, its old contract.
        seed: seed of the kernel initializers.
        dtype: dtype policy of every layer.
    """

    _defaults_of_older_files = {"include_preprocessing": False}

    def __init__(
        self,
        *,
        variant="large",
        output_stride=16,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-3,
        batch_norm_synchronized=None,
        image_shape=(None, None, 3),
        include_preprocessing=True,
        seed=None,
        dtype=None,
        **kwargs,
    ):
        if variant not in BLOCKS:
            raise ValueError(f"`variant` must be one of {sorted(BLOCKS)}, got {variant!r}.")
        blocks = BLOCKS[variant]
        scheme = block_strides(blocks, output_stride)
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )
        build = _Builder(batch_norm, seed, dtype)

        # === Functional model ===
        inputs = keras.Input(shape=tuple(image_shape), name="image")
        if include_preprocessing:
            x = ImageNormalization("unit_range", dtype=dtype, name="pixels_to_unit_range")(inputs)
        else:
            # normalised = (pixels - mean) / std, in pixel units; [-1, 1] = pixels / 127.5 - 1.
            x = keras.layers.Rescaling(
                scale=[std / 127.5 for std in IMAGENET_STD],
                offset=[mean / 127.5 - 1.0 for mean in IMAGENET_MEAN],
                dtype=dtype,
                name="imagenet_to_unit_range",
            )(inputs)
        x = build.conv(x, 16, "conv", kernel_size=3, strides=2)
        x = build.bn(x, "conv_bn")
        x = build.act(x, "hard_swish", "conv_hard_swish")
        features, nominal_stride = {}, 2
        for index, (block, (stride, dilation)) in enumerate(zip(blocks, scheme)):
            if block[3] > 1:  # the resolution would halve here: keep the level's last map
                if nominal_stride >= 4:
                    features[f"P{nominal_stride.bit_length() - 1}"] = x
                nominal_stride *= block[3]
            x = apply_inverted_residual_block(
                x, block, index, stride=stride, dilation=dilation, build=build
            )
        x = build.conv(x, make_divisible(x.shape[-1] * 6), "conv_1")
        x = build.bn(x, "conv_1_bn")
        features["P5"] = build.act(x, "hard_swish", "conv_1_hard_swish")
        kwargs.setdefault("name", f"mobilenet_v3_{variant}")
        super().__init__(inputs=inputs, outputs=features, dtype=dtype, **kwargs)

        # === Config ===
        self.variant = variant
        self.output_stride = int(output_stride)
        self.batch_norm_momentum = batch_norm["momentum"]
        self.batch_norm_epsilon = batch_norm["epsilon"]
        self.batch_norm_synchronized = batch_norm["synchronized"]
        self.image_shape = tuple(image_shape)
        self.include_preprocessing = bool(include_preprocessing)
        self.seed = seed

    @property
    def pyramid_outputs(self):
        """`{"P2": ..., "P5": ...}`: the symbolic level outputs (keras-hub's name)."""
        return dict(self.output)

    def load_imagenet_weights(self, path):
        """Loads a `keras.applications` MobileNetV3 `.h5` file (include_top or not) by name.

        Every weight of this trunk must be in the file with its shape
        (`ema_keras.weights.WeightsMismatchError` lists what is not); the
        ImageNet classifier of an `include_top=True` file is ignored.
        """
        weights = read_legacy_h5(path)
        assign_layer_weights(self, weights, source=str(path), ignore_layers=("conv_2", "logits"))
        return self
