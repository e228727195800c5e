"""Loading pretrained weights into an `EMANet` or its `DilatedResNet` backbone."""

import os
import re

from ema_keras.models.dilated_resnet import BLOCK_COUNTS, DilatedResNet
from ema_keras.models.emanet import EMANet
from ema_keras.models.mobilenet_v3 import MobileNetV3Backbone
from ema_keras.weights import keras_files, torch_files, torch_names
from ema_keras.weights.layer_weights import (
    WeightsMismatchError,
    assign_layer_weights,
    model_weights,
)

# Classifier layers of ImageNet files, which a segmentation backbone has no use for.
_IMAGENET_CLASSIFIERS = ("predictions", "probs", "fc1000")
_BLOCK_NAME = re.compile(r"^conv([2-5])_block(\d+)_")


def load_model_weights(model, path):
    """Loads a whole EMANet's weights (trunk, head, EMA bases, classifier).

    Args:
        model: an `EMANet` of the same depth, head and class count as the file.
            The output stride may differ (it does not change the weights).
        path: one of
            - a `.keras` file, e.g. a converted official checkpoint
              (`convert_official_checkpoint`) or a model saved by training;
            - a `.weights.h5` file saved from the same architecture;
            - the official PyTorch checkpoint itself (`.pth`, needs torch).

    Returns:
        `model`, for chaining.

    Raises:
        WeightsMismatchError: a different depth, class count, or any
            missing / unexpected / misshapen weight, all listed.
    """
    if not isinstance(model, EMANet):
        raise TypeError(
            f"load_model_weights expects an EMANet, got {type(model).__name__}; for a "
            "DilatedResNet use load_backbone_weights."
        )
    path = os.fspath(path)
    if torch_files.is_torch_file(path):
        load_official_state_dict(model, torch_files.read_state_dict(path), source=path)
    elif path.endswith(".keras"):
        _check_keras_file(model, keras_files.read_keras_config(path), path)
        source = keras_files.load_keras_model(path)
        assign_layer_weights(model, model_weights(source), source=path)
    elif path.endswith(".weights.h5"):
        _load_native(model, path)
    else:
        raise ValueError(
            f"Unknown weights file type: {path}. Expected `.keras`, `.weights.h5` or a PyTorch "
            f"checkpoint ({', '.join(torch_files.TORCH_SUFFIXES)})."
        )
    return model


def load_backbone_weights(backbone, path):
    """Loads ImageNet (or any pretrained) weights into a `DilatedResNet` or `MobileNetV3Backbone`.

    A `MobileNetV3Backbone` takes a `keras.applications` MobileNetV3Large/Small
    `.h5` file (see `MobileNetV3Backbone.load_imagenet_weights`); the rest of
    this docstring is about `DilatedResNet`.

    Weights are matched by layer name, so a file of any output stride fits a
    backbone of any output stride.

    Args:
        backbone: the `DilatedResNet` (for an EMANet: `model.backbone`).
        path: one of
            - a `keras.applications` ResNet50/101/152 ImageNet `.h5` file
              (standard stem, conv biases: the backbone must be
              `stem="standard"`, `use_conv_bias=True`, the default there);
            - a `.keras` file holding a `DilatedResNet` (converted by
              `convert_deep_stem_backbone` / `convert_torchvision_resnet`) or
              a whole `EMANet` (its backbone is taken);
            - a `.weights.h5` file saved from the same backbone architecture;
            - a PyTorch file (needs torch): a deep-stem or torchvision
              ImageNet ResNet, or an official EMANet checkpoint (its
              extractor is taken).
            The ImageNet classifier of a file is ignored. Convolutions
            without a bias in the file (PyTorch) get a zero bias when the
            backbone has one.

    Returns:
        `backbone`.

    Raises:
        WeightsMismatchError: a different depth or stem, or any missing /
            unexpected / misshapen weight, all listed.
    """
    if isinstance(backbone, MobileNetV3Backbone):
        # keras.applications MobileNetV3 `.h5` files, by layer name.
        backbone.load_imagenet_weights(path)
        return backbone
    if isinstance(backbone, EMANet):
        raise TypeError("load_backbone_weights expects a DilatedResNet: pass `model.backbone`.")
    if not isinstance(backbone, DilatedResNet):
        raise TypeError(
            f"load_backbone_weights expects a DilatedResNet, got {type(backbone).__name__}."
        )
    path = os.fspath(path)
    if torch_files.is_torch_file(path):
        state_dict = torch_files.read_state_dict(path)
        weights, unknown, _ = torch_names.to_keras_names(state_dict)
        raise_for_unknown_keys(unknown, path)
        head = [name for name in weights if not name.startswith("conv")]
        check_backbone(backbone, weights, path)
        assign_layer_weights(backbone, weights, source=path, ignore_layers=head)
    elif path.endswith(".keras"):
        source = keras_files.load_keras_model(path)
        if isinstance(source, EMANet):
            source = source.backbone
        if not isinstance(source, DilatedResNet):
            raise ValueError(
                f"{path} holds a {type(source).__name__}, not a DilatedResNet or EMANet."
            )
        weights = model_weights(source)
        check_backbone(backbone, weights, path)
        assign_layer_weights(backbone, weights, source=path)
    elif path.endswith(".weights.h5"):
        _load_native(backbone, path)
    elif path.endswith(".h5"):
        weights = keras_files.read_legacy_h5(path)
        check_backbone(backbone, weights, path)
        assign_layer_weights(backbone, weights, source=path, ignore_layers=_IMAGENET_CLASSIFIERS)
    else:
        raise ValueError(
            f"Unknown weights file type: {path}. Expected a keras.applications `.h5`, `.keras`, "
            f"`.weights.h5` or a PyTorch file ({', '.join(torch_files.TORCH_SUFFIXES)})."
        )
    return backbone


def load_official_state_dict(model, state_dict, *, source="the state dict"):
    """Loads an official EMANet state dict (`{key: numpy array}`) into `model`.

    Checks the depth and the class count first, for a precise message, then
    every weight (see `assign_layer_weights`).
    """
    layout = torch_names.detect_layout(state_dict)
    if layout != "official":
        raise WeightsMismatchError(
            f"{source} is a {layout} ResNet backbone, not an EMANet checkpoint: load it with "
            "load_backbone_weights(model.backbone, ...)."
        )
    weights, unknown, _ = torch_names.to_keras_names(state_dict, layout)
    raise_for_unknown_keys(unknown, source)
    check_backbone(model.backbone, weights, source)
    classifier = weights.get("classifier_conv", {}).get("bias")
    if classifier is not None and classifier.shape[0] != model.num_classes:
        raise WeightsMismatchError(
            f"{source} has {classifier.shape[0]} classes but the model has {model.num_classes}: "
            f"build it with num_classes={classifier.shape[0]}, or load only the backbone "
            "(load_backbone_weights) to fine-tune on another class count."
        )
    assign_layer_weights(model, weights, source=source)
    return model


def depth_name(block_counts):
    """"ResNet-101" for [3, 4, 23, 3]; the block counts for anything else."""
    for depth, counts in BLOCK_COUNTS.items():
        if list(counts) == list(block_counts):
            return f"ResNet-{depth}"
    return f"a ResNet with blocks {list(block_counts)}"


def weights_block_counts(weights):
    """Blocks per stage of `{keras layer: ...}` weights, from the `conv{s}_block{i}_` names."""
    counts = [0, 0, 0, 0]
    for name in weights:
        match = _BLOCK_NAME.match(name)
        if match:
            stage = int(match.group(1)) - 2
            counts[stage] = max(counts[stage], int(match.group(2)))
    return counts


def check_backbone(backbone, weights, source):
    counts = weights_block_counts(weights)
    if counts != list(backbone.block_counts):
        raise WeightsMismatchError(
            f"{source} holds {depth_name(counts)} but the model's backbone is "
            f"{depth_name(backbone.block_counts)}: build it with the file's depth."
        )
    stem = "deep" if "conv1_1_conv" in weights else "standard" if "conv1_conv" in weights else None
    if stem is not None and stem != backbone.stem:
        raise WeightsMismatchError(
            f"{source} has the {stem} stem but the backbone was built with stem={backbone.stem!r}."
        )


def _check_keras_file(model, config, path):
    class_name = config.get("class_name")
    if class_name == "DilatedResNet":
        raise WeightsMismatchError(
            f"{path} holds a backbone only: load it with "
            "load_backbone_weights(model.backbone, ...)."
        )
    if class_name != "EMANet":
        raise WeightsMismatchError(f"{path} holds a {class_name}, not an EMANet.")
    num_classes = config["config"].get("num_classes")
    if num_classes != model.num_classes:
        raise WeightsMismatchError(
            f"{path} has {num_classes} classes but the model has {model.num_classes}: build it "
            f"with num_classes={num_classes}, or load only the backbone (load_backbone_weights)."
        )


def _load_native(model, path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such weights file: {path}")
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as error:
        raise WeightsMismatchError(
            f"{path} does not fit model {model.name!r} (a `.weights.h5` file only loads into the "
            f"architecture that saved it): {error}"
        ) from error


def raise_for_unknown_keys(unknown, source):
    if unknown:
        shown = ", ".join(unknown[:12])
        if len(unknown) > 12:
            shown += f", ... ({len(unknown) - 12} more)"
        raise WeightsMismatchError(
            f"{source} has {len(unknown)} keys with no Keras counterpart: {shown}"
        )
