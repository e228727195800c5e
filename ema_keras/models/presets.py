"""The built-in presets: named EMANet configurations, as read-only data.

Each `Preset` names its architecture (the backbone that builds it:
"emanet" for `EMANetBackbone` on a `DilatedResNet`, "mobile_emanet" for
`MobileEMANetBackbone` on a `MobileNetV3Backbone`), its keyword arguments
(`config`: the `EMANetImageSegmenter`'s; `config["backbone"]` the backbone's;
`config["backbone"]["image_encoder"]` the encoder's) and, when it has them,
the location of its weights (a local path, `file://` or `http(s)://`, downloaded
once into the Keras cache). The built-in presets carry no weights yet.

`EMANetImageSegmenter.from_preset(name)` builds any of them; a model of your
own becomes a preset with `model.save_to_preset(folder)`, and
`from_preset(folder | "hf://..." | "kaggle://...")` builds it back
(`ema_keras.models.preset_files`).
"""

import copy
import dataclasses
import difflib
import os
import types
import urllib.parse
import urllib.request
import warnings
from typing import Any, Mapping, Optional

import keras

_VOC_CLASSES = 21  # background + 20 objects
# The official code's BatchNorm momentum (settings.BN_MOM = 3e-4 in PyTorch's
# convention) is 0.9997 in Keras': running statistics over ~3,000 steps.
_OFFICIAL_BN_MOMENTUM = 0.9997
_NO_WEIGHTS = "Configuration only: no weights yet (random initialisation)."


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named configuration: its description, class, arguments and weights location.

    `config` is read-only here; `get_preset(name)` hands out a deep copy to change.
    """

    name: str
    description: str
    config: Mapping[str, Any]
    architecture: str = "emanet"
    weights: Optional[str] = None


def _paper(depth, output_stride):
    encoder = {"depth": depth, "stem": "deep", "output_stride": output_stride}
    return {
        "backbone": {
            "image_encoder": {**encoder, "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM},
            "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
        },
        "num_classes": _VOC_CLASSES,
        "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
    }


def _mobile(variant, output_stride):
    return {
        "backbone": {
            "image_encoder": {"variant": variant, "output_stride": output_stride},
            "head_channels": 128,
            "ema_num_bases": 16,
            "ema_num_iterations": 1,
        },
        "num_classes": _VOC_CLASSES,
    }


_BUILTIN = (
    # The paper's models: deep stem, output stride 8, EMA on 512 channels.
    Preset(
        "emanet_resnet50_os8_voc",
        f"EMANet ResNet-50, deep stem, output stride 8, VOC. {_NO_WEIGHTS}",
        _paper(50, 8),
    ),
    Preset(
        "emanet_resnet101_os8_voc",
        f"EMANet ResNet-101, deep stem, output stride 8, VOC (the paper's). {_NO_WEIGHTS}",
        _paper(101, 8),
    ),
    Preset(
        "emanet_resnet152_os8_voc",
        f"EMANet ResNet-152, deep stem, output stride 8, VOC. {_NO_WEIGHTS}",
        _paper(152, 8),
    ),
    # Output stride 16: only stage 4 dilated, about 3.5x cheaper trunk.
    Preset(
        "emanet_resnet101_os16_voc",
        f"EMANet ResNet-101, deep stem, output stride 16, VOC. {_NO_WEIGHTS}",
        _paper(101, 16),
    ),
    Preset(
        "emanet_resnet50_os16",
        f"EMANet ResNet-50, deep stem, output stride 16, BN momentum 0.9. {_NO_WEIGHTS}",
        {
            "backbone": {"image_encoder": {"depth": 50, "stem": "deep", "output_stride": 16}},
            "num_classes": _VOC_CLASSES,
        },
    ),
    # mmsegmentation's variant: standard (torchvision / keras.applications)
    # stem, auxiliary FCN head on stage 3 and the concat-input conv.
    Preset(
        "emanet_resnet50_os8_aux",
        "EMANet ResNet-50, standard stem, output stride 8, aux head and concat input "
        f"(mmsegmentation's). {_NO_WEIGHTS}",
        {
            "backbone": {
                "image_encoder": {"depth": 50, "stem": "standard", "output_stride": 8},
                "concat_input": True,
            },
            "num_classes": _VOC_CLASSES,
            "aux_head": True,
        },
    ),
    # Seconds on a CPU: one block per stage, 8 base channels, 8 bases.
    Preset(
        "emanet_tiny_demo",
        f"A tiny EMANet for tests and demos (seconds on a CPU). {_NO_WEIGHTS}",
        {
            "backbone": {
                "image_encoder": {
                    "block_counts": [1, 1, 1, 1], "width": 8, "stem": "deep", "output_stride": 8
                },
                "head_channels": 32,
                "classifier_channels": 32,
                "ema_num_bases": 8,
            },
            "num_classes": _VOC_CLASSES,
            "aux_channels": 32,
        },
    ),
    # Phones (issue 14): MobileNetV3 and the light EMA head of `MobileEMANet`.
    # ImageNet trunks load with `model.image_encoder.load_imagenet_weights(path)`
    # (keras.applications .h5). Small runs at output stride 32: its last
    # stage (576-channel expansions, 5x5 depthwise) at 1/16 cost half its MACs
    # and ~40% of its int8 latency at 513 (docs/mobile.md), over the 40 ms goal.
    Preset(
        "emanet_mobilenetv3_large_voc",
        "MobileEMANet: MobileNetV3-Large, output stride 16, 128-channel EMA head (K=16, T=1), "
        f"LR-ASPP fusion with 1/8 features, VOC. {_NO_WEIGHTS}",
        _mobile("large", 16),
        architecture="mobile_emanet",
    ),
    Preset(
        "emanet_mobilenetv3_small_voc",
        "MobileEMANet: MobileNetV3-Small, output stride 32, 128-channel EMA head (K=16, T=1), "
        f"LR-ASPP fusion with 1/8 features, VOC. {_NO_WEIGHTS}",
        _mobile("small", 32),
        architecture="mobile_emanet",
    ),
)

# Read-only: name -> Preset. Models of your own are preset folders, not entries here.
PRESETS = types.MappingProxyType({preset.name: preset for preset in _BUILTIN})

# What the deprecated `register_preset` added (kept apart from the built-ins).
_REGISTERED = {}


def preset_names():
    """Every preset name `from_preset` knows, sorted (built-in and registered)."""
    return sorted({*PRESETS, *_REGISTERED})


def _entry(name):
    preset = _REGISTERED.get(name) or PRESETS.get(name)
    if preset is None:
        close = difflib.get_close_matches(str(name), preset_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"Unknown EMANet preset {name!r}{hint}; available: {preset_names()}.")
    return preset


def is_preset_name(name):
    """True for the name of a built-in (or registered) preset."""
    return isinstance(name, str) and (name in PRESETS or name in _REGISTERED)


def get_preset(name):
    """A deep copy of the preset's keyword arguments (the segmenter's, nested as in `Preset`)."""
    return copy.deepcopy(dict(_entry(name).config))


def describe_preset(name):
    """The preset's one-line description."""
    return _entry(name).description


def preset_architecture(name):
    """The preset's architecture: "emanet" (`EMANetBackbone`) or "mobile_emanet"."""
    return _entry(name).architecture


def register_preset(
    name, config, *, description, weights=None, overwrite=False, architecture="emanet"
):
    """Deprecated: save a model with `model.save_to_preset(folder)` and build it from there.

    Adds a named configuration (`config`: the segmenter's keyword arguments
    nested as a `Preset`'s, or 0.1's `EMANet` arguments) with optional `weights` (a local path,
    `file://` or `http(s)://` URL of a `.keras` / `.weights.h5` file) to this
    process's presets. Built-in names cannot be replaced.
    """
    warnings.warn(
        "register_preset is deprecated: save the model with model.save_to_preset(folder) and "
        "build it with EMANetImageSegmenter.from_preset(folder), or share the folder with "
        "ema_keras.models.upload_preset.",
        DeprecationWarning,
        stacklevel=2,
    )
    if name in PRESETS:
        raise ValueError(f"Preset {name!r} is built in and cannot be replaced.")
    if name in _REGISTERED and not overwrite:
        raise ValueError(f"Preset {name!r} exists; pass overwrite=True to replace it.")
    if "backbone" not in config:
        raise ValueError(f"Preset {name!r}: `config` needs a 'backbone' dict.")
    _REGISTERED[name] = Preset(
        name, description, copy.deepcopy(dict(config)), architecture=architecture, weights=weights
    )


def unregister_preset(name):
    """Removes a preset `register_preset` added (a KeyError for any other name)."""
    del _REGISTERED[name]


def preset_weights(name):
    """Local path of the preset's weights file (downloaded if needed), or None."""
    return resolve_weights(_entry(name).weights, preset=name)


def weights_to_load(name, load_weights):
    """The preset's weights file to load for `from_preset(..., load_weights=...)`, or None.

    `None` loads the file if the preset names one, `True` requires it, `False` never loads.
    """
    weights = preset_weights(name) if load_weights is not False else None
    if load_weights and weights is None:
        raise ValueError(f"Preset {name!r} carries no weights: use load_weights=False.")
    return weights


def resolve_weights(location, *, preset=None):
    """A local path for `location`: a path, `file://...`, or `http(s)://...` (cached download)."""
    if location is None:
        return None
    owner = f"Preset {preset!r}: weights" if preset else "Weights"
    scheme = urllib.parse.urlparse(str(location)).scheme
    if scheme in ("http", "https"):
        filename = os.path.basename(urllib.parse.urlparse(location).path)
        return keras.utils.get_file(filename, origin=location, cache_subdir="ema_keras")
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlparse(location).path)
    elif scheme and len(scheme) > 1:  # not a Windows drive letter
        raise ValueError(
            f"{owner} {location!r}: unsupported scheme {scheme!r} (a path, file:// or http(s)://)."
        )
    else:
        path = os.path.expanduser(str(location))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{owner} file not found: {path}")
    return path
