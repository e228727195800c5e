"""Loading pretrained weights into an `EMANet`, a `MobileEMANet` or their backbones.

A whole model's weights load strictly (`load_model_weights`: the file's
architecture and class count must be the model's) or for fine-tuning
(`load_fine_tuning_weights`: a file of another class count gives every
weight but the classifiers, which keep their fresh initialisation).
"""

import dataclasses
import os
import re
import tempfile

import keras

from ema_keras.models.dilated_resnet import BLOCK_COUNTS, DilatedResNet
from ema_keras.models.mobilenet_v3 import MobileNetV3Backbone
from ema_keras.models.segmenter_parts import (
    architecture_of,
    architecture_of_config,
    image_encoder_of,
)
from ema_keras.serialization import PACKAGE
from ema_keras.weights import keras_files, torch_files, torch_names
from ema_keras.weights.layer_weights import (
    WeightsMismatchError,
    assign_layer_weights,
    model_weights,
    named_layers,
)

# Classifier layers of ImageNet files, which a segmentation backbone has no use for.
_IMAGENET_CLASSIFIERS = ("predictions", "probs", "fc1000")
_BLOCK_NAME = re.compile(r"^conv([2-5])_block(\d+)_")
# The segmenter classes whose files this module loads.
_MODEL_CLASS_NAMES = ("EMANetImageSegmenter", "EMANet", "MobileEMANet")
_BACKBONE_CLASS_NAMES = ("DilatedResNet", "MobileNetV3Backbone", "EMANetBackbone",
                         "MobileEMANetBackbone")  # fmt: skip


def _model_class(class_name):
    """The segmenter class registered as `class_name` (None for any other name).

    Found in Keras' registry when needed, not imported: the segmenters load
    their presets' weights through this module, which so stays below them.
    """
    if class_name not in _MODEL_CLASS_NAMES:
        return None
    return keras.saving.get_registered_object(f"{PACKAGE}>{class_name}")


def _is_segmenter(model):
    return isinstance(model, tuple(_model_class(name) for name in _MODEL_CLASS_NAMES))


@dataclasses.dataclass(frozen=True)
class LoadedWeights:
    """What `load_fine_tuning_weights` did: the file, both class counts, the layers left new.

    `reinitialised` is empty when the class counts agree (everything was
    loaded); `message` is then None.
    """

    source: str
    file_classes: int
    model_classes: int
    reinitialised: tuple = ()

    @property
    def message(self):
        """The one line that says which layers start anew and why (None: none do)."""
        if not self.reinitialised:
            return None
        return (
            f"Fine-tuning: {', '.join(self.reinitialised)} re-initialised (the file has "
            f"{self.file_classes} classes, the model {self.model_classes}); every other weight "
            f"loaded from {self.source}."
        )


def load_model_weights(model, path):
    """Loads a whole model's weights (trunk, head, EMA bases, classifier).

    Strict: the file must hold the model's class count. This is what
    `from_preset` uses, so a preset built with another `num_classes` is
    refused rather than silently trained from a half-loaded file; to start
    new classes from a trained model, use `load_fine_tuning_weights`.

    Args:
        model: an `EMANet` or `MobileEMANet` of the same architecture (depth,
            head, class count) as the file. The output stride may differ
            (it does not change the weights).
        path: one of
            - a `.keras` file of the model's class, e.g. a converted official
              checkpoint (`convert_official_checkpoint`) or a model saved by
              training;
            - a `.weights.h5` file saved from the same architecture;
            - the official PyTorch checkpoint itself (`.pth`, needs torch;
              `EMANet` only: the official models are ResNets).

    Returns:
        `model`, for chaining.

    Raises:
        WeightsMismatchError: another model class, depth or class count, or
            any missing / unexpected / misshapen weight, all listed; nothing
            is assigned then.
    """
    _load(model, path, new_classifier=False)
    return model


def load_fine_tuning_weights(model, path):
    """Loads a trained model's weights into `model`, whose class count may differ.

    With the same class count this is `load_model_weights`. With another,
    every weight but the classifiers' (`classifier_conv` and, with an aux
    head, `aux_classifier_conv`; `classifier_high` and `classifier_low` in a
    `MobileEMANet`) is loaded and checked as there, and the classifiers keep
    the initialisation the model was built with. Any other difference is
    refused, as there.

    Args:
        model: an `EMANet` or `MobileEMANet`, built with the new class count.
        path: as in `load_model_weights`.

    Returns:
        A `LoadedWeights`: `reinitialised` names the layers left as built,
        `message` says so in one line (for the training log).

    Raises:
        WeightsMismatchError: as `load_model_weights`, class count aside.
    """
    return _load(model, path, new_classifier=True)


def copy_fine_tuning_weights(model, source, *, source_name):
    """`load_fine_tuning_weights` from a built model of the same class (a preset's, say).

    Weights are matched by layer name, so `source` may differ from `model`
    in its class count (the classifiers stay as built) and output stride.
    `source_name` names it in messages.
    """
    _check_model(model)
    if architecture_of(source) != architecture_of(model):
        raise WeightsMismatchError(
            f"{source_name} holds {_describe(architecture_of(source))} but the model is "
            f"{_describe(architecture_of(model))}."
        )
    return _assign(model, model_weights(source), source_name, source.num_classes)


def classifier_layers(model):
    """Names of `model`'s layers that output the classes (what fine-tuning re-initialises)."""
    _check_model(model)
    present = named_layers(model)
    return tuple(name for name in type(model).classifier_layer_names if name in present)


def _load(model, path, *, new_classifier):
    _check_model(model)
    path = os.fspath(path)
    if torch_files.is_torch_file(path):
        _refuse_official_into_mobile(model, path)
        state_dict = torch_files.read_state_dict(path)
        return _load_official(model, state_dict, path, new_classifier)
    if path.endswith(".keras"):
        config = keras_files.read_keras_config(path)
        file_classes = _check_keras_file(model, config, path, new_classifier)
        source = keras_files.load_keras_model(path)
        return _assign(model, model_weights(source), path, file_classes)
    if path.endswith(".weights.h5"):
        return _load_weights_h5(model, path, new_classifier)
    raise ValueError(
        f"Unknown weights file type: {path}. Expected `.keras`, `.weights.h5` or a PyTorch "
        f"checkpoint ({', '.join(torch_files.TORCH_SUFFIXES)})."
    )


def _assign(model, weights, source, file_classes):
    """Assigns every weight, the classifiers' only when the class counts agree."""
    kept = () if file_classes == model.num_classes else classifier_layers(model)
    assign_layer_weights(model, weights, source=source, keep_layers=kept)
    return LoadedWeights(source, int(file_classes), model.num_classes, kept)


def _check_model(model):
    if not _is_segmenter(model):
        raise TypeError(
            f"load_model_weights expects an EMANet segmenter (EMANetImageSegmenter, or 0.1's "
            f"EMANet or MobileEMANet), got {type(model).__name__}; for a trunk use "
            "load_backbone_weights."
        )


def _refuse_official_into_mobile(model, source):
    if architecture_of(model) == "mobile_emanet":
        raise WeightsMismatchError(
            f"{source}: a PyTorch file can only be an official EMANet checkpoint, a dilated "
            "ResNet, which a MobileEMANet cannot load; start it from a MobileEMANet `.keras` "
            "file, or its backbone from keras.applications ImageNet weights "
            "(load_backbone_weights)."
        )


def _class_count_error(source, file_classes, model_classes):
    return WeightsMismatchError(
        f"{source} has {file_classes} classes but the model has {model_classes}: build it with "
        f"num_classes={file_classes}, or fine-tune (load_fine_tuning_weights, train_voc.py "
        "--weights) to train a new classifier."
    )


def _load_weights_h5(model, path, new_classifier):
    """A `.weights.h5` file, keyed by layer order: Keras itself matches it to the model.

    For another class count the file is loaded into a copy of the model
    built with the file's count, whose weights are then assigned by name.
    """
    file_classes = _weights_h5_classes(model, path) if new_classifier else model.num_classes
    if file_classes == model.num_classes:
        _load_native(model, path)
        return LoadedWeights(path, model.num_classes, model.num_classes)
    source = type(model).from_config({**model.get_config(), "num_classes": file_classes})
    _load_native(source, path)
    return _assign(model, model_weights(source), path, file_classes)


def _weights_h5_classes(model, path):
    """The class count of a `.weights.h5` file of `model`'s architecture.

    The file names no layers, so the count is read from how its arrays
    differ from those `model` itself writes: a file of another class count
    differs only in the last axis of the classifiers' kernels and biases.
    Anything else gives `model.num_classes`, and the strict load then says
    what differs.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such weights file: {path}")
    with tempfile.TemporaryDirectory() as folder:
        own = os.path.join(folder, "model.weights.h5")
        model.save_weights(own)
        ours = _array_shapes(own)
    theirs = _array_shapes(path)
    counts = set()
    for key, shape in ours.items():
        other = theirs.get(key)
        if other is not None and other != shape:
            if other[:-1] != shape[:-1] or shape[-1] != model.num_classes:
                return model.num_classes
            counts.add(other[-1])
    return counts.pop() if len(counts) == 1 else model.num_classes


def _array_shapes(path):
    import h5py

    shapes = {}
    try:
        with h5py.File(path, "r") as file:
            file.visititems(
                lambda name, item: shapes.__setitem__(name, tuple(item.shape))
                if isinstance(item, h5py.Dataset)
                else None
            )
    except OSError as error:
        message = f"Cannot read {path} as a `.weights.h5` file: {error}"
        raise WeightsMismatchError(message) from error
    return shapes


def load_backbone_weights(backbone, path):
    """Loads ImageNet (or any pretrained) weights into a `DilatedResNet` or `MobileNetV3Backbone`.

    A `MobileNetV3Backbone` takes a `keras.applications` MobileNetV3Large/Small
    `.h5` file (see `MobileNetV3Backbone.load_imagenet_weights`); the rest of
    this docstring is about `DilatedResNet`.

    Weights are matched by layer name, so a file of any output stride fits a
    backbone of any output stride.

    Args:
        backbone: the `DilatedResNet` (of a segmenter: `model.image_encoder`; an
            `EMANetBackbone` gives its own).
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
    if _is_segmenter(backbone):
        raise TypeError(
            "load_backbone_weights expects a trunk: pass `model.image_encoder` (0.1's EMANet: "
            "`model.backbone`)."
        )
    backbone = image_encoder_of(backbone)  # an EMANetBackbone's trunk
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
        source = image_encoder_of(source)  # a segmenter's or a backbone's trunk
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
    """Loads an official EMANet state dict (`{key: numpy array}`) into an `EMANet`.

    Checks the depth and the class count first, for a precise message, then
    every weight (see `assign_layer_weights`).
    """
    _load_official(model, state_dict, source, new_classifier=False)
    return model


def _load_official(model, state_dict, source, new_classifier):
    _refuse_official_into_mobile(model, source)
    layout = torch_names.detect_layout(state_dict)
    if layout != "official":
        raise WeightsMismatchError(
            f"{source} is a {layout} ResNet backbone, not an EMANet checkpoint: load it with "
            "load_backbone_weights(model.image_encoder, ...)."
        )
    weights, unknown, _ = torch_names.to_keras_names(state_dict, layout)
    raise_for_unknown_keys(unknown, source)
    check_backbone(image_encoder_of(model), weights, source)
    classifier = weights.get("classifier_conv", {}).get("bias")
    # Without a classifier bias the count is unknown: assigning reports it missing.
    file_classes = model.num_classes if classifier is None else int(classifier.shape[0])
    if file_classes != model.num_classes and not new_classifier:
        raise _class_count_error(source, file_classes, model.num_classes)
    return _assign(model, weights, source, file_classes)


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


def _check_keras_file(model, config, path, new_classifier):
    """Refuses a `.keras` file of another kind of model; returns its class count."""
    class_name = config.get("class_name")
    if class_name in _BACKBONE_CLASS_NAMES:
        raise WeightsMismatchError(
            f"{path} holds a backbone only: load it with "
            "load_backbone_weights(model.image_encoder, ...)."
        )
    if class_name not in _MODEL_CLASS_NAMES:
        raise WeightsMismatchError(f"{path} holds a {class_name}, not an EMANet segmenter.")
    file_architecture = architecture_of_config(config)
    if file_architecture != architecture_of(model):
        raise WeightsMismatchError(
            f"{path} holds {_describe(file_architecture)} but the model is "
            f"{_describe(architecture_of(model))}: build one of the file's presets to load it."
        )
    num_classes = config["config"].get("num_classes")
    if num_classes != model.num_classes and not new_classifier:
        raise _class_count_error(path, num_classes, model.num_classes)
    return num_classes


def _describe(architecture):
    return {"emanet": "a dilated-ResNet EMANet", "mobile_emanet": "a MobileNetV3 EMANet"}.get(
        architecture, "another model"
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
