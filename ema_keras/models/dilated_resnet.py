"""Dilated ResNet-50/101/152 backbone, its dilation scheme from one `output_stride`."""

import keras

from ema_keras.layers.batch_norm import SyncBatchNormalization
from ema_keras.layers.conv_bn import apply_conv_bn, batch_norm_settings, layer_seed
from ema_keras.layers.image_normalization import ImageNormalization
from ema_keras.layers.initializers import conv_kernel_initializer
from ema_keras.models.functional_model import FunctionalModel
from ema_keras.serialization import PACKAGE

BLOCK_COUNTS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
STEMS = ("deep", "standard")
OUTPUT_STRIDES = (8, 16, 32)
EXPANSION = 4  # bottleneck output channels = 4 x its inner width
FEATURE_NAMES = ("P2", "P3", "P4", "P5")  # outputs of stages 1..4 (conv2..conv5)


def dilation_scheme(block_counts, output_stride, multi_grid=(1, 2, 4)):
    """(stride, dilation) of the 3x3 conv of every block, stage by stage.

    The stem reduces by 4. Stages 2 to 4 halve the resolution until it reaches
    `output_stride`; from then on a stage keeps stride 1 and doubles the
    dilation instead (its "base" dilation). As in the official EMANet code:

    - the first block of a dilated stage runs at half the base dilation (it
      sits where the stride would have been): base 2 -> 1, base 4 -> 2;
    - the last stage, when dilated, uses multi-grid: block i > 0 at
      `base * multi_grid[i]`.

    Output stride 8 gives stage 3 = (1, 2, 2, ...), stage 4 = (2, 8, 16);
    output stride 16 gives stage 4 = (1, 4, 8); output stride 32 is the plain
    classification ResNet (all 1).
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"`output_stride` must be one of {OUTPUT_STRIDES}, got {output_stride}.")
    multi_grid = tuple(multi_grid or ())
    scheme = []
    current_stride, base_dilation = 4, 1
    for stage, num_blocks in enumerate(block_counts):
        stride = 1
        if stage > 0:
            if current_stride < output_stride:
                stride, current_stride = 2, current_stride * 2
            else:
                base_dilation *= 2
        grid = (1,) * num_blocks
        last_stage = stage == len(block_counts) - 1
        if last_stage and base_dilation > 1 and multi_grid:
            if len(multi_grid) < num_blocks:
                raise ValueError(
                    f"`multi_grid` {multi_grid} has fewer entries than the last stage has "
                    f"blocks ({num_blocks})."
                )
            grid = multi_grid
        first = (stride, max(1, base_dilation // 2))
        rest = [(1, base_dilation * grid[i]) for i in range(1, num_blocks)]
        scheme.append([first] + rest)
    return scheme


def apply_bottleneck_block(
    x, width, *, stride, dilation, name, use_bias, batch_norm, seed=None, dtype=None
):
    """ResNet v1 bottleneck: 1x1, 3x3 (strided, dilated), 1x1, plus shortcut.

    The stride sits on the 3x3 conv (official EMANet, torchvision "v1.5");
    `keras.applications` puts it on the first 1x1 instead. Kernel shapes are
    the same, so its weights load, but they were trained for the other layout.
    """
    conv_args = dict(use_bias=use_bias, batch_norm=batch_norm, seed=seed, dtype=dtype)
    shortcut = x
    if stride != 1 or x.shape[-1] != width * EXPANSION:
        shortcut = apply_conv_bn(
            x, width * EXPANSION, 1, strides=stride, activation=False, name=f"{name}_0", **conv_args
        )
    x = apply_conv_bn(x, width, 1, name=f"{name}_1", **conv_args)
    x = apply_conv_bn(
        x, width, 3, strides=stride, dilation_rate=dilation, name=f"{name}_2", **conv_args
    )
    x = apply_conv_bn(x, width * EXPANSION, 1, activation=False, name=f"{name}_3", **conv_args)
    x = keras.layers.Add(dtype=dtype, name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(dtype=dtype, name=f"{name}_out")(x)


def apply_stem(x, stem, width, *, use_bias, batch_norm, seed=None, dtype=None):
    """Stem + max-pool: the input reduced by 4.

    "standard": 7x7/2 conv, named as in `keras.applications` (`conv1_*`).
    "deep" (ResNet-C, official EMANet): 3x3/2 conv to `width`, 3x3 to
    `width`, 3x3 to `2 * width`, each but the last followed by BN + ReLU, then
    BN + ReLU (`conv1_1_*`, `conv1_2_*`, `conv1_3_conv`, `conv1_bn`).
    """
    conv_args = dict(use_bias=use_bias, batch_norm=batch_norm, seed=seed, dtype=dtype)
    if stem == "standard":
        x = apply_conv_bn(x, width, 7, strides=2, name="conv1", **conv_args)
    else:
        x = apply_conv_bn(x, width, 3, strides=2, name="conv1_1", **conv_args)
        x = apply_conv_bn(x, width, 3, name="conv1_2", **conv_args)
        x = keras.layers.Conv2D(
            2 * width,
            3,
            padding="same",
            use_bias=use_bias,
            kernel_initializer=conv_kernel_initializer(layer_seed(seed, "conv1_3")),
            dtype=dtype,
            name="conv1_3_conv",
        )(x)
        x = SyncBatchNormalization(**batch_norm, dtype=dtype, name="conv1_bn")(x)
        x = keras.layers.ReLU(dtype=dtype, name="conv1_relu")(x)
    # Zero padding before the pool is exact: it follows a ReLU, so no value is
    # below 0 (PyTorch pads the max-pool with -inf).
    x = keras.layers.ZeroPadding2D(1, dtype=dtype, name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, dtype=dtype, name="pool1_pool")(x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DilatedResNet(FunctionalModel):
    """ResNet v1 trunk (no pooling or classifier) with a dilated tail.

    A functional model mapping (B, H, W, 3) RGB images, raw pixels 0..255
    (ImageNet-normalised with `include_preprocessing=False`), to a dict of
    stage outputs `{"P2", "P3", "P4", "P5"}` (stages 1 to 4, `conv2`..`conv5` in layer
    names), also `pyramid_outputs` (keras-hub's name): strides 4, 8, 16, 32
    for output stride 32; at output stride 8 stages 3 and 4 stay at stride 8
    (a 513x513 image gives 65x65 maps).

    Layer names follow `keras.applications` ResNet (`conv1_conv`, `conv1_bn`,
    `pool1_pool`, `conv{stage+1}_block{i}_{0..3}_conv/_bn`, where `_0` is the
    projection shortcut), so with `stem="standard"` and conv biases (the
    default there) its ImageNet `.h5` weights load by name. `keras.applications`
    strides the first 1x1 conv of a block, this trunk (like the official
    EMANet and torchvision) strides the 3x3; shapes match, behaviour does not
    exactly. Its BatchNorm epsilon is 1.001e-5, ours 1e-5.

    Args:
        depth: 50, 101 or 152. Ignored when `block_counts` is given.
        block_counts: blocks per stage (4 ints), e.g. `[1, 1, 1, 1]` for tests.
        stem: "deep" (three 3x3 convs, official EMANet) or "standard" (7x7).
        output_stride: 8, 16 or 32, see `dilation_scheme`.
        multi_grid: dilation multipliers of the last stage's blocks when
            dilated; `None` disables multi-grid.
        width: channels of the stem and of stage 1's bottleneck (64 in
            ResNets); stage s is `width * 2**(s-1)` wide inside, 4x outside.
        use_conv_bias: biases on the trunk's convs. `None`: True for the
            standard stem (`keras.applications` layout), False for the deep
            stem (official layout).
        batch_norm_momentum, batch_norm_epsilon: Keras convention (momentum
            0.9 is PyTorch's 0.1).
        batch_norm_synchronized: `None` = synchronised when built inside a
            strategy with more than one replica; stored resolved.
        image_shape: (H, W, 3); H and W may be None. (`input_shape`, its
            old name, still works with a DeprecationWarning.)
        include_preprocessing: take raw RGB pixels (0..255) and normalise
            them in the model (an `ImageNormalization`, float32, no weights);
            False takes ImageNet-normalised images. A `.keras` file saved
            before this argument existed loads with False, its old contract.
        seed: seed of the kernel initializers.
        dtype: dtype policy of every layer.
    """

    _renamed_arguments = {"input_shape": "image_shape"}
    _defaults_of_older_files = {"include_preprocessing": False}

    def __init__(
        self,
        *,
        depth=50,
        block_counts=None,
        stem="deep",
        output_stride=8,
        multi_grid=(1, 2, 4),
        width=64,
        use_conv_bias=None,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        batch_norm_synchronized=None,
        image_shape=(None, None, 3),
        include_preprocessing=True,
        seed=None,
        dtype=None,
        **kwargs,
    ):
        if block_counts is None:
            if depth not in BLOCK_COUNTS:
                raise ValueError(
                    f"`depth` must be one of {sorted(BLOCK_COUNTS)} (or give `block_counts`), "
                    f"got {depth}."
                )
            block_counts = BLOCK_COUNTS[depth]
        else:
            depth = None
        block_counts = [int(count) for count in block_counts]
        if len(block_counts) != 4 or min(block_counts) < 1:
            raise ValueError(f"`block_counts` must be 4 positive ints, got {block_counts}.")
        if stem not in STEMS:
            raise ValueError(f"`stem` must be one of {STEMS}, got {stem!r}.")
        if int(width) < 1:
            raise ValueError(f"`width` must be >= 1, got {width}.")
        if use_conv_bias is None:
            use_conv_bias = stem == "standard"
        multi_grid = tuple(int(rate) for rate in multi_grid) if multi_grid else None
        scheme = dilation_scheme(block_counts, output_stride, multi_grid)
        batch_norm = batch_norm_settings(
            batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized
        )

        # === Functional model ===
        inputs = keras.Input(shape=tuple(image_shape), name="image")
        x = inputs
        if include_preprocessing:
            x = ImageNormalization("imagenet", dtype=dtype, name="imagenet_normalization")(x)
        x = apply_stem(
            x,
            stem,
            width,
            use_bias=use_conv_bias,
            batch_norm=batch_norm,
            seed=seed,
            dtype=dtype,
        )
        features = {}
        for stage, blocks in enumerate(scheme):
            for index, (stride, dilation) in enumerate(blocks):
                x = apply_bottleneck_block(
                    x,
                    width * 2**stage,
                    stride=stride,
                    dilation=dilation,
                    name=f"conv{stage + 2}_block{index + 1}",
                    use_bias=use_conv_bias,
                    batch_norm=batch_norm,
                    seed=seed,
                    dtype=dtype,
                )
            features[FEATURE_NAMES[stage]] = x
        kwargs.setdefault("name", "dilated_resnet")
        super().__init__(inputs=inputs, outputs=features, dtype=dtype, **kwargs)

        # === Config ===
        self.depth = depth
        self.block_counts = block_counts
        self.stem = stem
        self.output_stride = int(output_stride)
        self.multi_grid = multi_grid
        self.width = int(width)
        self.use_conv_bias = bool(use_conv_bias)
        self.batch_norm_momentum = batch_norm["momentum"]
        self.batch_norm_epsilon = batch_norm["epsilon"]
        self.batch_norm_synchronized = batch_norm["synchronized"]
        self.image_shape = tuple(image_shape)
        self.include_preprocessing = bool(include_preprocessing)
        self.seed = seed

    @property
    def pyramid_outputs(self):
        """`{"P2": ..., "P5": ...}`: the symbolic stage outputs (keras-hub's name)."""
        return dict(self.output)

    @property
    def dilations(self):
        """Dilation of every block's 3x3 conv, stage by stage."""
        scheme = dilation_scheme(self.block_counts, self.output_stride, self.multi_grid)
        return [[dilation for _, dilation in blocks] for blocks in scheme]

    @property
    def feature_channels(self):
        """Channels of P2..P5."""
        return {name: self.width * 2**stage * EXPANSION for stage, name in enumerate(FEATURE_NAMES)}
