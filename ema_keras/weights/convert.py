"""Converting the official PyTorch files to Keras files (needs torch; the results do not)."""

import os

from ema_keras.models.dilated_resnet import BLOCK_COUNTS, DilatedResNet
from ema_keras.models.emanet_backbone import EMANetBackbone
from ema_keras.models.image_segmenter import (
    EMANetImageSegmenter,
    build_segmenter,
    nested_config,
)
from ema_keras.models.presets import get_preset
from ema_keras.weights import torch_files, torch_names
from ema_keras.weights.layer_weights import WeightsMismatchError, assign_layer_weights
from ema_keras.weights.loading import (
    check_backbone,
    depth_name,
    load_official_state_dict,
    raise_for_unknown_keys,
)

OUTPUT_SUFFIXES = (".keras", ".weights.h5")
KINDS = ("official", "deep_stem", "torchvision")


def convert_official_checkpoint(
    checkpoint_path,
    output_path,
    *,
    preset=None,
    depth=None,
    output_stride=None,
    num_classes=None,
    num_iterations=3,
):
    """Converts the authors' EMANet checkpoint (`{"net": state_dict, "step": n}`).

    The architecture is read from the checkpoint (depth, class count, head
    width, number of bases); what the weights cannot tell is given here. The
    arguments given are checked against the file.

    Args:
        checkpoint_path: the official `.pth` file.
        output_path: `.keras` (the whole model: `keras.models.load_model`
            after `import ema_keras`) or `.weights.h5` (weights only, for
            `load_model_weights` into the same architecture).
        preset: an `EMANet` preset to build (its depth must match the file);
            `None` builds the official architecture from the file.
        depth: expected ResNet depth (50/101/152); `None` = the file's.
        output_stride: 8 (the official VOC model) or 16; `None` = the
            preset's, or 8.
        num_classes: expected class count; `None` = the file's.
        num_iterations: EM iterations T (not stored in the weights; 3 in the
            official settings).

    Returns:
        The converted `EMANet`.
    """
    _check_output_path(output_path)
    state_dict = torch_files.read_state_dict(checkpoint_path)
    source = os.fspath(checkpoint_path)
    layout = torch_names.detect_layout(state_dict)
    if layout != "official":
        raise WeightsMismatchError(
            f"{source} is a {layout} ResNet backbone, not an EMANet checkpoint: use "
            f"convert_{'deep_stem_backbone' if layout == 'deep_stem' else 'torchvision_resnet'}."
        )
    counts = torch_names.block_counts(state_dict, layout)
    _check_depth(depth, counts, source)
    file_classes = _shape(state_dict, "fc2.weight", source)[0]
    if num_classes is not None and int(num_classes) != file_classes:
        raise WeightsMismatchError(
            f"{source} has {file_classes} classes, not num_classes={num_classes}."
        )
    head = {
        "num_classes": file_classes,
        "head_channels": _shape(state_dict, "fc0.conv.weight", source)[0],
        "classifier_channels": _shape(state_dict, "fc1.0.conv.weight", source)[0],
        "ema_num_bases": _shape(state_dict, "emau.mu", source)[-1],
        "ema_num_iterations": int(num_iterations),
    }
    if preset is not None:
        preset_backbone = nested_config(EMANetBackbone, get_preset(preset))["backbone"]
        preset_backbone = preset_backbone["image_encoder"]
        preset_counts = preset_backbone.get("block_counts")
        preset_counts = preset_counts or BLOCK_COUNTS[preset_backbone["depth"]]
        if list(preset_counts) != counts:
            raise WeightsMismatchError(
                f"{source} holds {depth_name(counts)} but preset {preset!r} is "
                f"{depth_name(preset_counts)}."
            )
        overrides = dict(head)
        if output_stride is not None:
            overrides["output_stride"] = output_stride
        model = EMANetImageSegmenter.from_preset(preset, **overrides)
    else:
        encoder = {**_depth_args(counts), "stem": "deep", "output_stride": output_stride or 8}
        model = build_segmenter(EMANetBackbone, {"backbone": encoder, **head})
    load_official_state_dict(model, state_dict, source=source)
    _save(model, output_path)
    return model


def convert_deep_stem_backbone(checkpoint_path, output_path, *, depth=None, output_stride=8):
    """Converts an ImageNet ResNet with the deep stem (`conv1.{0,3,6}`, `bn1`, `layer1..4`).

    Writes a `DilatedResNet(stem="deep")` (`.keras` or `.weights.h5`) for
    `load_backbone_weights`; the ImageNet classifier (`fc`) is dropped. The
    output stride only sets the saved model's; the weights fit any.
    """
    return _convert_backbone(checkpoint_path, output_path, "deep_stem", depth, output_stride)


def convert_torchvision_resnet(checkpoint_path, output_path, *, depth=None, output_stride=8):
    """Converts a torchvision ImageNet ResNet-50/101/152 state dict (`conv1`, `bn1`, `layer1..4`).

    Writes a `DilatedResNet(stem="standard", use_conv_bias=False)`; loaded
    into a standard-stem backbone with conv biases, the biases become zero.
    """
    return _convert_backbone(checkpoint_path, output_path, "torchvision", depth, output_stride)


def convert_checkpoint(checkpoint_path, output_path, *, kind=None, **kwargs):
    """Dispatches on `kind` ("official", "deep_stem", "torchvision"; `None` = from the keys)."""
    if kind is None:
        kind = detect_kind(checkpoint_path)
    if kind == "official":
        return convert_official_checkpoint(checkpoint_path, output_path, **kwargs)
    if kind == "deep_stem":
        return convert_deep_stem_backbone(checkpoint_path, output_path, **kwargs)
    if kind == "torchvision":
        return convert_torchvision_resnet(checkpoint_path, output_path, **kwargs)
    raise ValueError(f"`kind` must be one of {KINDS} or None, got {kind!r}.")


def detect_kind(checkpoint_path):
    """"official", "deep_stem" or "torchvision": the layout of a PyTorch file's keys."""
    return torch_names.detect_layout(torch_files.read_state_dict(checkpoint_path))


def _convert_backbone(checkpoint_path, output_path, layout, depth, output_stride):
    _check_output_path(output_path)
    state_dict = torch_files.read_state_dict(checkpoint_path)
    source = os.fspath(checkpoint_path)
    found = torch_names.detect_layout(state_dict)
    if found != layout:
        raise WeightsMismatchError(f"{source} has the {found} layout, not {layout}.")
    counts = torch_names.block_counts(state_dict, layout)
    _check_depth(depth, counts, source)
    weights, unknown, _ = torch_names.to_keras_names(state_dict, layout)
    raise_for_unknown_keys(unknown, source)
    backbone = DilatedResNet(
        **_depth_args(counts),
        stem="deep" if layout == "deep_stem" else "standard",
        output_stride=output_stride,
        use_conv_bias=False,
    )
    check_backbone(backbone, weights, source)
    assign_layer_weights(backbone, weights, source=source)
    _save(backbone, output_path)
    return backbone


def _check_depth(depth, counts, source):
    if depth is not None and list(BLOCK_COUNTS.get(depth, ())) != counts:
        raise WeightsMismatchError(
            f"{source} holds {depth_name(counts)}, not the requested depth={depth}."
        )


def _depth_args(counts):
    for depth, known in BLOCK_COUNTS.items():
        if list(known) == counts:
            return {"depth": depth}
    return {"block_counts": counts}


def _shape(state_dict, key, source):
    if key not in state_dict:
        raise WeightsMismatchError(f"{source} has no {key!r}, which every EMANet checkpoint has.")
    return state_dict[key].shape


def _check_output_path(path):
    if not os.fspath(path).endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"The output file must end with one of {OUTPUT_SUFFIXES}, got {path}.")


def _save(model, path):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".keras"):
        model.save(path)
    else:
        model.save_weights(path)
