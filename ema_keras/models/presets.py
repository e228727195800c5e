"""Named EMANet configurations: preset name -> `EMANet` keyword arguments.

`"backbone"` holds the `DilatedResNet` keyword arguments. A preset is only a
configuration; weights are loaded separately (see `ema_keras.weights`).
"""

import copy

_VOC_CLASSES = 21  # background + 20 objects
# The official code's BatchNorm momentum (settings.BN_MOM = 3e-4 in PyTorch's
# convention) is 0.9997 in Keras': running statistics over ~3,000 steps.
_OFFICIAL_BN_MOMENTUM = 0.9997

PRESETS = {
    # The paper's models: deep stem, output stride 8, EMA on 512 channels.
    "emanet_resnet50_os8_voc": {
        "backbone": {
            "depth": 50, "stem": "deep", "output_stride": 8,
            "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
        },
        "num_classes": _VOC_CLASSES,
        "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
    },
    "emanet_resnet101_os8_voc": {
        "backbone": {
            "depth": 101, "stem": "deep", "output_stride": 8,
            "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
        },
        "num_classes": _VOC_CLASSES,
        "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
    },
    "emanet_resnet152_os8_voc": {
        "backbone": {
            "depth": 152, "stem": "deep", "output_stride": 8,
            "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
        },
        "num_classes": _VOC_CLASSES,
        "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
    },
    # Output stride 16: only stage 4 dilated, about 3.5x cheaper trunk.
    "emanet_resnet101_os16_voc": {
        "backbone": {
            "depth": 101, "stem": "deep", "output_stride": 16,
            "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
        },
        "num_classes": _VOC_CLASSES,
        "batch_norm_momentum": _OFFICIAL_BN_MOMENTUM,
    },
    "emanet_resnet50_os16": {
        "backbone": {"depth": 50, "stem": "deep", "output_stride": 16},
        "num_classes": _VOC_CLASSES,
    },
    # mmsegmentation's variant: standard (torchvision / keras.applications)
    # stem, auxiliary FCN head on stage 3 and the concat-input conv.
    "emanet_resnet50_os8_aux": {
        "backbone": {"depth": 50, "stem": "standard", "output_stride": 8},
        "num_classes": _VOC_CLASSES,
        "aux_head": True,
        "concat_input": True,
    },
    # Seconds on a CPU: one block per stage, 8 base channels, 8 bases.
    "emanet_tiny_demo": {
        "backbone": {"block_counts": [1, 1, 1, 1], "width": 8, "stem": "deep", "output_stride": 8},
        "num_classes": _VOC_CLASSES,
        "head_channels": 32,
        "classifier_channels": 32,
        "ema_num_bases": 8,
    },
}


def get_preset(name):
    """A deep copy of the preset's keyword arguments; a clear error for unknown names."""
    if name not in PRESETS:
        raise ValueError(f"Unknown EMANet preset {name!r}; available: {sorted(PRESETS)}.")
    return copy.deepcopy(PRESETS[name])
