"""Parameters and multiply-accumulates of EMANet models, counted per layer.

What is counted, for one image of a given size:

- MACs (multiply-accumulates) of the matrix products: convolutions
  (H_out * W_out * k_h * k_w * C_in * C_out / groups), dense layers, and the
  EM attention's einsums (per iteration N*K*C for the E-step and N*K*C for
  the M-step, plus N*K*C for the reconstruction; N = H * W). FLOPs are
  reported as 2 x MACs. Element-wise work (BatchNorm, which folds into the
  conv at inference, ReLU, additions, softmax, normalisations, pooling,
  resizing) is not counted. The paper's "FLOPs" figures agree with these MACs.
- Parameters as PyTorch counts them: every weight except BatchNorm moving
  statistics and the EMA bases (both buffers in PyTorch). Keras'
  `count_params()` counts those too.

Shapes are taken from the built model, so the model must be built for a fixed
input size; `model_cost(model, input_size=...)` rebuilds an `EMANet` or
`DilatedResNet` from its config at that size when needed (no forward pass).
"""

import dataclasses
import math

import keras

from ema_keras.layers.em_attention import EMALayer, EMAUnit

_WEIGHTLESS_OK = (keras.layers.InputLayer,)


@dataclasses.dataclass(frozen=True)
class Cost:
    """Parameters and MACs of a part of a model."""

    params: int = 0
    macs: int = 0

    @property
    def flops(self):
        return 2 * self.macs

    def __add__(self, other):
        return Cost(self.params + other.params, self.macs + other.macs)


def conv_cost(kernel_shape, output_shape, use_bias, groups=1):
    """A Conv2D with kernel (k_h, k_w, C_in / groups, C_out) and output (B, H, W, C_out)."""
    k_h, k_w, in_per_group, filters = kernel_shape
    params = k_h * k_w * in_per_group * filters + (filters if use_bias else 0)
    return Cost(params, output_shape[1] * output_shape[2] * k_h * k_w * in_per_group * filters)


def em_attention_cost(channels, num_bases, num_iterations, height, width):
    """The EM iterations and the reconstruction: (2T + 1) * N * K * C MACs, no parameters."""
    return Cost(0, (2 * num_iterations + 1) * height * width * num_bases * channels)


def ema_unit_cost(channels, num_bases, num_iterations, height, width):
    """EMA unit: 1x1 conv with bias, EM attention, 1x1 conv + BN."""
    pixels = height * width
    convs = Cost(2 * channels * channels + channels, 2 * pixels * channels * channels)
    norm = Cost(2 * channels, 0)
    return convs + norm + em_attention_cost(channels, num_bases, num_iterations, height, width)


def non_local_cost(channels, height, width, reduction=2):
    """An embedded-Gaussian non-local block (Wang et al., 2018) on a C-channel map.

    theta, phi, g: 1x1 convs C -> C / reduction with bias; attention
    softmax(theta phi^T) g over all N = H * W positions (N^2 * C/r MACs per
    product, two products); output 1x1 conv C / r -> C with bias + BN,
    residual. Its attention is O(N^2 C), the EMA unit's O(N K C T).
    """
    inner = channels // reduction
    pixels = height * width
    projections = Cost(3 * (channels * inner + inner), 3 * pixels * channels * inner)
    attention = Cost(0, 2 * pixels * pixels * inner)
    output = Cost(inner * channels + channels + 2 * channels, pixels * inner * channels)
    return projections + attention + output


def depthwise_conv_cost(kernel_shape, output_shape, use_bias):
    """A DepthwiseConv2D with kernel (k_h, k_w, C, multiplier): one k_h x k_w filter per channel."""
    k_h, k_w, channels, multiplier = kernel_shape
    params = k_h * k_w * channels * multiplier + (channels * multiplier if use_bias else 0)
    return Cost(params, output_shape[1] * output_shape[2] * k_h * k_w * channels * multiplier)


def layer_cost(layer):
    """Cost of one built layer, from its weights and its (static) output shape."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # not a Conv2D subclass in Keras 3
        output_shape = _static_shape(layer.output, layer)
        return depthwise_conv_cost(tuple(layer.kernel.shape), output_shape, layer.use_bias)
    if isinstance(layer, keras.layers.Conv2D):
        output_shape = _static_shape(layer.output, layer)
        return conv_cost(tuple(layer.kernel.shape), output_shape, layer.use_bias, layer.groups)
    if isinstance(layer, keras.layers.Dense):
        output_shape = _static_shape(layer.output, layer)
        units_in, units_out = layer.kernel.shape
        params = units_in * units_out + (units_out if layer.use_bias else 0)
        return Cost(params, math.prod(output_shape[1:-1]) * units_in * units_out)
    if isinstance(layer, keras.layers.BatchNormalization):
        channels = layer.moving_mean.shape[0]
        return Cost(channels * (int(layer.center) + int(layer.scale)), 0)
    if isinstance(layer, EMAUnit):
        _, height, width, channels = _static_shape(layer.output, layer)
        return ema_unit_cost(channels, layer.num_bases, layer.num_iterations, height, width)
    if isinstance(layer, EMALayer):
        _, height, width, channels = _static_shape(layer.output, layer)
        return em_attention_cost(channels, layer.num_bases, layer.num_iterations, height, width)
    if layer.weights and not isinstance(layer, _WEIGHTLESS_OK):
        raise ValueError(
            f"No cost rule for layer {layer.name!r} ({type(layer).__name__}), which has weights."
        )
    return Cost()


def model_cost(model, input_size=None):
    """Cost of an EMANet segmenter (or a backbone, or an encoder alone) by part, for one image.

    Returns a dict of `Cost`: "backbone" (the image encoder, the paper's
    backbone), "head" (everything after it except the auxiliary head, EMA
    unit included), "ema_unit",
    "pre_ema" (the 3x3 conv-BN before the unit), "aux_head" and "total".
    The paper's "extra" cost of EMANet over its backbone is
    `pre_ema + ema_unit`.

    Args:
        model: a built `EMANetImageSegmenter` (or 0.1's `EMANet`,
            `MobileEMANet`), `EMANetBackbone`, `MobileEMANetBackbone`,
            `DilatedResNet` or `MobileNetV3Backbone`.
        input_size: (height, width); the model is rebuilt from its config at
            that size if it was built for another (or a dynamic) one.
    """
    if input_size is not None and tuple(model.input.shape[1:3]) != tuple(input_size):
        model = _rebuild(model, input_size)
    if None in model.input.shape[1:3]:
        raise ValueError(
            f"Model {model.name!r} has a dynamic input size {model.input.shape}; pass `input_size`."
        )
    parts = {name: Cost() for name in ("backbone", "head", "ema_unit", "pre_ema", "aux_head")}
    for layer, part in _leaf_layers(model):
        cost = layer_cost(layer)
        if part == "backbone":
            parts["backbone"] += cost
            continue
        if layer.name.startswith("aux"):
            parts["aux_head"] += cost
            continue
        parts["head"] += cost
        if isinstance(layer, EMAUnit):
            parts["ema_unit"] += cost
        elif layer.name.startswith("pre_ema"):
            parts["pre_ema"] += cost
    parts["total"] = parts["backbone"] + parts["head"] + parts["aux_head"]
    return parts


def _backbone_classes():
    from ema_keras.models import DilatedResNet, MobileNetV3Backbone

    return (DilatedResNet, MobileNetV3Backbone)


def _leaf_layers(model, part=None):
    """(layer, part) for every layer, nested models flattened into "backbone"."""
    backbones = _backbone_classes()
    if isinstance(model, backbones) and part is None:
        part = "backbone"
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer, "backbone" if isinstance(layer, backbones) else part)
        else:
            yield layer, part or "head"


def _rebuild(model, input_size):
    """`model` built anew from its config for images of `input_size` (its weights not copied).

    Every level that records an `image_shape` (the image encoder; 0.1's
    segmenters too) gets the new one.
    """
    from ema_keras.models.functional_model import FunctionalModel

    if not isinstance(model, FunctionalModel):
        raise ValueError(
            f"`input_size` needs an EMANet segmenter or one of its backbones to rebuild, "
            f"got {type(model).__name__}."
        )
    image_shape = [int(input_size[0]), int(input_size[1]), int(model.input.shape[-1])]

    def resized(config):
        if isinstance(config, dict):
            config = {key: resized(value) for key, value in config.items()}
            if "image_shape" in config:
                config["image_shape"] = image_shape
        return config

    serialized = resized(keras.saving.serialize_keras_object(model))
    return keras.saving.deserialize_keras_object(serialized)


def _static_shape(tensor, layer):
    shape = tuple(tensor.shape)
    if None in shape[1:]:
        raise ValueError(f"Layer {layer.name!r} has a dynamic output shape {shape}.")
    return shape


# The paper's Table (ResNet-101, output stride 8, 513x513): parameters and
# "FLOPs" (which are MACs) of the trunk and of the EMA heads over it.
PAPER_FIGURES = {
    (101, "trunk"): (42.6e6, 190.6e9),
    (101, "emanet_256"): (4.87e6, 21.1e9),
    (101, "emanet_512"): (10.0e6, 43.1e9),
}


def cost_table(depth, *, output_stride=8, input_size=(513, 513), widths=(256, 512), stem="deep"):
    """Rows of the paper-style cost table for one trunk.

    One row for the trunk, then per head width: EMANet's extra cost as the
    paper counts it (3x3 conv to the width + EMA unit), a non-local block of
    the same width in place of the EMA unit, and EMANet's whole head (also
    the 3x3 conv to 256 and the classifier, 21 classes). Each row is a dict
    with "model", "params", "macs", and "paper_params", "paper_macs" (None
    where the paper gives no figure).
    """
    from ema_keras.models import DilatedResNet, EMANetBackbone, EMANetImageSegmenter

    height, width = input_size
    backbone = DilatedResNet(
        depth=depth, stem=stem, output_stride=output_stride, image_shape=(height, width, 3)
    )
    trunk = model_cost(backbone)["backbone"]
    name = f"ResNet-{depth} trunk ({stem} stem, OS{output_stride})"
    rows = [_row(name, trunk, PAPER_FIGURES.get((depth, "trunk")) if output_stride == 8 else None)]
    _, feature_height, feature_width, _ = backbone.output["P5"].shape
    for channels in widths:
        model = EMANetImageSegmenter(
            backbone=EMANetBackbone(image_encoder=backbone, head_channels=channels)
        )
        parts = model_cost(model)
        paper = PAPER_FIGURES.get((depth, f"emanet_{channels}")) if output_stride == 8 else None
        local = parts["pre_ema"] + non_local_cost(channels, feature_height, feature_width)
        extra = parts["pre_ema"] + parts["ema_unit"]
        rows += [
            _row(f"+ EMANet ({channels}): 3x3 conv + EMA unit", extra, paper),
            _row(f"+ non-local ({channels}): 3x3 conv + non-local block", local),
            _row(f"+ EMANet ({channels}), whole head", parts["head"]),
        ]
    return rows


def format_table(rows):
    """Markdown table: parameters in millions, GMACs (= the paper's GFLOPs)."""

    def number(value, scale, digits):
        return "-" if value is None else f"{value / scale:.{digits}f}"

    lines = [
        "| model | params (M) | GMACs | paper params (M) | paper GFLOPs |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {number(row['params'], 1e6, 2)} | {number(row['macs'], 1e9, 1)} "
            f"| {number(row['paper_params'], 1e6, 2)} | {number(row['paper_macs'], 1e9, 1)} |"
        )
    return "\n".join(lines)


def _row(name, part, paper=None):
    paper_params, paper_macs = paper if paper else (None, None)
    return {
        "model": name,
        "params": part.params,
        "macs": part.macs,
        "paper_params": paper_params,
        "paper_macs": paper_macs,
    }
