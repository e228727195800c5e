"""Raw RGB pixels (0..255) to what a backbone's weights were trained on, inside the model."""

import keras
from keras import ops

from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ema_keras.serialization import PACKAGE

# (mean, std) per channel, in pixel units, of each target range.
TARGETS = {
    # (x - mean) / std with the ImageNet statistics: the ResNets' input.
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    # [-1, 1] = x / 127.5 - 1: keras.applications MobileNetV3's input.
    "unit_range": ((127.5,) * 3, (127.5,) * 3),
}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageNormalization(keras.layers.Layer):
    """Maps raw RGB pixels (0..255) to `(x - mean) / std`, in float32 whatever the policy.

    The first layer of every model that takes raw pixels, as
    `keras.applications`' `include_preprocessing=True`; it is also how
    `ema_keras.models.expects_raw_pixels` recognises such a model. It has no
    weights, so weights files and parameter counts are those of the model
    without it.

    It always computes and returns float32: under a mixed policy a bfloat16
    subtraction of the mean would keep 2-3 significant digits of a pixel; the
    next layer (a conv) casts to its compute dtype itself. The form
    `(x - mean) * (1 / std)` keeps the mean pixel, the pipelines' padding,
    exactly 0, and is SUB and MUL in TFLite, both int8 builtins.

    Args:
        target: "imagenet" ((x - mean) / std with `ema_keras.imagenet`'s
            statistics) or "unit_range" (x / 127.5 - 1).
    """

    def __init__(self, target="imagenet", **kwargs):
        if target not in TARGETS:
            raise ValueError(f"`target` must be one of {sorted(TARGETS)}, got {target!r}.")
        kwargs["autocast"] = False  # inputs are cast to float32 in `call`, not to the policy's
        super().__init__(**kwargs)
        self.target = target
        mean, std = TARGETS[target]
        self._mean = tuple(float(m) for m in mean)
        self._inverse_std = tuple(1.0 / float(s) for s in std)

    def call(self, inputs):
        pixels = ops.cast(inputs, "float32")
        mean = ops.convert_to_tensor(self._mean, "float32")
        inverse_std = ops.convert_to_tensor(self._inverse_std, "float32")
        return (pixels - mean) * inverse_std

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype="float32")

    def get_config(self):
        return {**super().get_config(), "target": self.target}
