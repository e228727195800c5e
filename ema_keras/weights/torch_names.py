"""PyTorch parameter names of the official EMANet and of ImageNet ResNets -> Keras names.

Pure NumPy: the state dict arrives as `{key: numpy array}` (see
`torch_files.read_state_dict`), so nothing here needs torch. Every known key
is renamed to `(keras layer name, variable name)` and its array laid out the
Keras way; the result is independent of any Keras model and is matched to one
by `layer_weights.assign_layer_weights`, which reports what is missing or
left over.

Layouts understood:

- "official": the authors' EMANet checkpoint (`extractor.*`, `fc0`, `emau`,
  `fc1`, `fc2`).
- "deep_stem": their ImageNet backbone (`conv1.{0,3,6}`, `conv1.{1,4}`,
  `bn1`, `layer1..4`, `fc`).
- "torchvision": the standard ResNet (`conv1`, `bn1`, `layer1..4`, `fc`).
"""

import re

import numpy as np

LAYOUTS = ("official", "deep_stem", "torchvision")

# BatchNorm buffers/parameters in PyTorch -> Keras. `num_batches_tracked`
# is a training counter with no Keras counterpart.
_BATCH_NORM = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_IGNORED_SUFFIXES = ("num_batches_tracked",)

# Sub-module inside a bottleneck -> Keras layer suffix.
_BLOCK_PARTS = {
    "conv1": "1_conv",
    "bn1": "1_bn",
    "conv2": "2_conv",
    "bn2": "2_bn",
    "conv3": "3_conv",
    "bn3": "3_bn",
    "downsample.0": "0_conv",
    "downsample.1": "0_bn",
}

# Prefixes of the official checkpoint's head -> Keras layer.
_OFFICIAL_HEAD = {
    "fc0.conv": "pre_ema_conv",
    "fc0.bn": "pre_ema_bn",
    "fc1.0.conv": "post_ema_conv",
    "fc1.0.bn": "post_ema_bn",
    "fc2": "classifier_conv",
}
_OFFICIAL_EMAU = {
    "emau.mu": ("ema_unit", "em_attention/bases"),
    "emau.conv1.weight": ("ema_unit", "input_kernel"),
    "emau.conv1.bias": ("ema_unit", "input_bias"),
    "emau.conv2.0.weight": ("ema_unit", "output_conv/kernel"),
}


def conv_kernel(weight):
    """(out, in, kh, kw) PyTorch conv weight -> (kh, kw, in, out) Keras kernel."""
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)))


def detect_layout(state_dict):
    """"official", "deep_stem" or "torchvision", from the stem's keys."""
    keys = set(state_dict)
    if "extractor.0.0.weight" in keys:
        return "official"
    if "conv1.0.weight" in keys:
        return "deep_stem"
    if "conv1.weight" in keys:
        return "torchvision"
    sample = sorted(keys)[:5]
    raise ValueError(
        "Not an EMANet or ResNet state dict: found none of 'extractor.0.0.weight' (official "
        "EMANet), 'conv1.0.weight' (deep-stem ResNet) or 'conv1.weight' (torchvision ResNet); "
        f"first keys: {sample}."
    )


def block_counts(state_dict, layout=None):
    """Blocks per stage, read from the keys, e.g. [3, 4, 23, 3] for ResNet-101."""
    layout = layout or detect_layout(state_dict)
    pattern = (
        re.compile(r"^extractor\.([4-7])\.(\d+)\.")
        if layout == "official"
        else re.compile(r"^layer([1-4])\.(\d+)\.")
    )
    first_stage = 4 if layout == "official" else 1
    counts = [0, 0, 0, 0]
    for key in state_dict:
        match = pattern.match(key)
        if match:
            stage = int(match.group(1)) - first_stage
            counts[stage] = max(counts[stage], int(match.group(2)) + 1)
    return counts


def to_keras_names(state_dict, layout=None):
    """Renames a state dict to `{keras layer: {variable: array}}`.

    Returns `(weights, unknown_keys, dropped_keys)`: keys with no Keras
    counterpart in this layout are returned, not silently skipped, so the
    caller can report them; `dropped_keys` are the ImageNet classifier
    (`fc.*`) of backbone files, which a segmentation backbone has no use for.
    """
    layout = layout or detect_layout(state_dict)
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}, got {layout!r}.")
    weights, unknown, dropped = {}, [], []
    for key, value in state_dict.items():
        if key.endswith(_IGNORED_SUFFIXES):
            continue
        if layout != "official" and key.startswith("fc."):
            dropped.append(key)
            continue
        name = _keras_name(key, layout)
        if name is None:
            unknown.append(key)
            continue
        layer, variable = name
        value = np.asarray(value, dtype=np.float32)
        if variable.endswith("kernel") and value.ndim == 4:
            value = conv_kernel(value)
        elif variable == "em_attention/bases":
            value = value.reshape(value.shape[-2:])  # (1, C, K) -> (C, K)
        weights.setdefault(layer, {})[variable] = value
    return weights, sorted(unknown), sorted(dropped)


def _keras_name(key, layout):
    if layout == "official":
        if key in _OFFICIAL_EMAU:
            return _OFFICIAL_EMAU[key]
        if key.startswith("emau.conv2.1."):
            return _batch_norm("ema_unit", key[len("emau.conv2.1.") :], prefix="output_norm/")
        for prefix, layer in _OFFICIAL_HEAD.items():
            if key.startswith(prefix + "."):
                return _conv_or_bn(layer, key[len(prefix) + 1 :])
        stem = {"extractor.0.0": "conv1_1_conv", "extractor.0.1": "conv1_1_bn",
                "extractor.0.3": "conv1_2_conv", "extractor.0.4": "conv1_2_bn",
                "extractor.0.6": "conv1_3_conv", "extractor.1": "conv1_bn"}
        stage_pattern = r"^extractor\.([4-7])\.(\d+)\.(.+)$"
        first_stage = 4
    else:
        if layout == "deep_stem":
            stem = {"conv1.0": "conv1_1_conv", "conv1.1": "conv1_1_bn",
                    "conv1.3": "conv1_2_conv", "conv1.4": "conv1_2_bn",
                    "conv1.6": "conv1_3_conv", "bn1": "conv1_bn"}
        else:
            stem = {"conv1": "conv1_conv", "bn1": "conv1_bn"}
        stage_pattern = r"^layer([1-4])\.(\d+)\.(.+)$"
        first_stage = 1
    module, _, leaf = key.rpartition(".")
    if module in stem:
        return _conv_or_bn(stem[module], leaf)
    match = re.match(stage_pattern, key)
    if match:
        stage, block, rest = int(match.group(1)) - first_stage, int(match.group(2)), match.group(3)
        part, _, leaf = rest.rpartition(".")
        if part in _BLOCK_PARTS:
            return _conv_or_bn(f"conv{stage + 2}_block{block + 1}_{_BLOCK_PARTS[part]}", leaf)
    return None


def _conv_or_bn(layer, leaf):
    if layer.endswith("_bn"):
        return _batch_norm(layer, leaf)
    if leaf == "weight":
        return layer, "kernel"
    if leaf == "bias":
        return layer, "bias"
    return None


def _batch_norm(layer, leaf, prefix=""):
    if leaf not in _BATCH_NORM:
        return None
    return layer, prefix + _BATCH_NORM[leaf]
