"""Named EMANet configurations: preset name -> description, `EMANet` arguments, weights.

`"config"` holds the `EMANet` keyword arguments, its `"backbone"` the
`DilatedResNet` ones. `"weights"`, when a preset has them, names a file that
`EMANet.from_preset` loads (`ema_keras.weights.load_model_weights`): a local
path, a `file://` URL, or an `http(s)://` URL downloaded once into the Keras
cache. The built-in presets carry no weights yet.
"""

import copy
import difflib
import os
import urllib.parse
import urllib.request

import keras

_VOC_CLASSES = 21  # background + 20 objects
# The official code's BatchNorm momentum (settings.BN_MOM = 3e-4 in PyTorch's
# convention) is 0.9997 in Keras': running statistics over ~3,000 steps.
_OFFICIAL_BN_MOMENTUM = 0.9997
_NO_WEIGHTS = "Configuration only: no weights yet (random initialisation)."


def _paper(depth, output_stride):
    return {
        "backbone": {
            "depth": depth, "stem": "deep", "output_stride": output_stride,
            "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
        },
        "num_classes": _VOC_CLASSES,
        "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
    }  # fmt: skip


def _mobile(variant, output_stride):
    return {
        "backbone": {"variant": variant, "output_stride": output_stride},
        "num_classes": _VOC_CLASSES,
        "head_channels": 128,
        "ema_num_bases": 16,
        "ema_num_iterations": 1,
    }


PRESETS = {
    # The paper's models: deep stem, output stride 8, EMA on 512 channels.
    "emanet_resnet50_os8_voc": {
        "description": f"EMANet ResNet-50, deep stem, output stride 8, VOC. {_NO_WEIGHTS}",
        "config": _paper(50, 8),
    },
    "emanet_resnet101_os8_voc": {
        "description": f"EMANet ResNet-101, deep stem, output stride 8, VOC (the paper's). "
        f"{_NO_WEIGHTS}",
        "config": _paper(101, 8),
    },
    "emanet_resnet152_os8_voc": {
        "description": f"EMANet ResNet-152, deep stem, output stride 8, VOC. {_NO_WEIGHTS}",
        "config": _paper(152, 8),
    },
    # Output stride 16: only stage 4 dilated, about 3.5x cheaper trunk.
    "emanet_resnet101_os16_voc": {
        "description": f"EMANet ResNet-101, deep stem, output stride 16, VOC. {_NO_WEIGHTS}",
        "config": _paper(101, 16),
    },
    "emanet_resnet50_os16": {
        "description": f"EMANet ResNet-50, deep stem, output stride 16, BN momentum 0.9. "
        f"{_NO_WEIGHTS}",
        "config": {
            "backbone": {"depth": 50, "stem": "deep", "output_stride": 16},
            "num_classes": _VOC_CLASSES,
        },
    },
    # mmsegmentation's variant: standard (torchvision / keras.applications)
    # stem, auxiliary FCN head on stage 3 and the concat-input conv.
    "emanet_resnet50_os8_aux": {
        "description": "EMANet ResNet-50, standard stem, output stride 8, aux head and "
        f"concat input (mmsegmentation's). {_NO_WEIGHTS}",
        "config": {
            "backbone": {"depth": 50, "stem": "standard", "output_stride": 8},
            "num_classes": _VOC_CLASSES,
            "aux_head": True,
            "concat_input": True,
        },
    },
    # Seconds on a CPU: one block per stage, 8 base channels, 8 bases.
    "emanet_tiny_demo": {
        "description": f"A tiny EMANet for tests and demos (seconds on a CPU). {_NO_WEIGHTS}",
        "config": {
            "backbone": {
                "block_counts": [1, 1, 1, 1], "width": 8, "stem": "deep", "output_stride": 8
            },
            "num_classes": _VOC_CLASSES,
            "head_channels": 32,
            "classifier_channels": 32,
            "ema_num_bases": 8,
        },
    },
    # Phones (issue 14): MobileNetV3 and the light EMA head of `MobileEMANet`
    # (build with `MobileEMANet.from_preset` or `ema_keras.models.build_preset`).
    # ImageNet trunks load with `model.backbone.load_imagenet_weights(path)`
    # (keras.applications .h5). Small runs at output stride 32: its last
    # stage (576-channel expansions, 5x5 depthwise) at 1/16 cost half its MACs
    # and ~40% of its int8 latency at 513 (docs/mobile.md), over the 40 ms goal.
    "emanet_mobilenetv3_large_voc": {
        "description": "MobileEMANet: MobileNetV3-Large, output stride 16, 128-channel EMA "
        f"head (K=16, T=1), LR-ASPP fusion with 1/8 features, VOC. {_NO_WEIGHTS}",
        "config": _mobile("large", 16),
        "architecture": "mobile_emanet",
    },
    "emanet_mobilenetv3_small_voc": {
        "description": "MobileEMANet: MobileNetV3-Small, output stride 32, 128-channel EMA "
        f"head (K=16, T=1), LR-ASPP fusion with 1/8 features, VOC. {_NO_WEIGHTS}",
        "config": _mobile("small", 32),
        "architecture": "mobile_emanet",
    },
}


def _entry(name):
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"Unknown EMANet preset {name!r}{hint}; available: {sorted(PRESETS)}.")
    return PRESETS[name]


def get_preset(name):
    """A deep copy of the preset's `EMANet` keyword arguments."""
    return copy.deepcopy(_entry(name)["config"])


def describe_preset(name):
    """The preset's one-line description."""
    return _entry(name)["description"]


def preset_architecture(name):
    """The model class that builds the preset: "emanet" (`EMANet`) or "mobile_emanet"."""
    return _entry(name).get("architecture", "emanet")


def register_preset(
    name, config, *, description, weights=None, overwrite=False, architecture="emanet"
):
    """Adds a preset: `EMANet` arguments (`"backbone"`: `DilatedResNet`'s), optional weights.

    `weights`: a local path, a `file://` URL or an `http(s)://` URL of a
    `.keras` / `.weights.h5` file (see `resolve_weights`); resolved only when
    the preset is built with its weights. `architecture`: the class that
    builds it with `ema_keras.models.build_preset` ("emanet" or "mobile_emanet",
    whose `"backbone"` holds `MobileNetV3Backbone` arguments).
    """
    if name in PRESETS and not overwrite:
        raise ValueError(f"Preset {name!r} exists; pass overwrite=True to replace it.")
    if "backbone" not in config:
        raise ValueError(f"Preset {name!r}: `config` needs a 'backbone' dict.")
    PRESETS[name] = {
        "description": description,
        "config": copy.deepcopy(config),
        "weights": weights,
        "architecture": architecture,
    }


def preset_weights(name):
    """Local path of the preset's weights file (downloaded if needed), or None."""
    return resolve_weights(_entry(name).get("weights"), preset=name)


def weights_to_load(name, load_weights):
    """The preset's weights file to load for `from_preset(..., load_weights=...)`, or None.

    `None` loads the file if the preset names one, `True` requires it, `False` never loads.
    """
    weights = preset_weights(name) if load_weights is not False else None
    if load_weights and weights is None:
        raise ValueError(f"Preset {name!r} carries no weights: use load_weights=False.")
    return weights


def build_backbone(backbone_class, preset_backbone, overrides, shared_args):
    """The backbone of a preset with `overrides` applied; removes the backbone's keys from them.

    `overrides["backbone"]` may be a built backbone (kept as is) or a dict of
    backbone arguments; keys of `overrides` that are backbone arguments go to
    the backbone, those in `shared_args` go to both backbone and head.
    """
    backbone = overrides.pop("backbone", None)
    backbone_args = backbone_class.config_arguments()
    backbone_overrides = {
        key: overrides.pop(key)
        for key in list(overrides)
        if key in backbone_args and key not in shared_args
    }
    if isinstance(backbone, keras.Model):
        if backbone_overrides:
            raise ValueError(
                f"Backbone arguments {sorted(backbone_overrides)} given with a built backbone."
            )
        return backbone
    shared = {key: value for key, value in overrides.items() if key in shared_args}
    return backbone_class(
        **{**preset_backbone, **(backbone or {}), **backbone_overrides, **shared}
    )


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
