"""What a model takes: raw RGB pixels, or ImageNet-normalised images (files saved before).

Models built now take raw pixels (float32 or uint8, 0..255) and normalise them
in their first layer, an `ImageNormalization` (`include_preprocessing=True`,
the default of `DilatedResNet` and `MobileNetV3Backbone`). A model built with
`include_preprocessing=False`, or loaded from a `.keras` file saved before the
models took raw pixels, expects ImageNet-normalised input instead.

Every consumer (evaluation, prediction, attention maps, export and its
verification) asks `expects_raw_pixels` and feeds `model_inputs(model,
pixels)`: the question has this one answer. See docs/input_contract.md.
"""

import keras
from keras import ops

from ema_keras.layers.image_normalization import ImageNormalization


def expects_raw_pixels(model):
    """True if `model` takes raw RGB pixels (0..255), False if ImageNet-normalised images.

    The answer is whether the model holds an `ImageNormalization` layer (at
    any depth: in its backbone, in a flat copy such as
    `ema_keras.inference.fold_batch_norm`'s, or in a model wrapping it), so
    it holds for every model the library builds or loads; an old file's
    backbone has none. Any other callable (not a Keras layer) is taken to
    expect normalised input, the contract of every model before this one.
    """
    if isinstance(model, ImageNormalization):
        return True
    if not isinstance(model, keras.layers.Layer):
        return False
    return any(
        isinstance(layer, ImageNormalization)
        for layer in model._flatten_layers(include_self=False, recursive=True)
    )


def model_inputs(model, pixels):
    """What `model` should be fed for raw RGB `pixels` (..., 3), 0..255: float32.

    The pixels themselves for a raw-pixel model; ImageNet-normalised
    (`ImageNormalization`, float32) for a model that expects that. Works on
    NumPy arrays, backend tensors and symbolic `keras.KerasTensor`s (to put
    the normalisation into a wrapping functional model).
    """
    if expects_raw_pixels(model):
        return pixels if isinstance(pixels, keras.KerasTensor) else ops.cast(pixels, "float32")
    return ImageNormalization(name="imagenet_normalization")(pixels)
