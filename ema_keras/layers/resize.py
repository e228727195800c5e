"""Bilinear resizing of a feature map to the spatial size of another tensor."""

import keras
import numpy as np
from keras import ops

from ema_keras.layers import tensorflow_ops
from ema_keras.serialization import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class BilinearResize(keras.layers.Layer):
    """Resizes `inputs[0]` bilinearly to the height and width of `inputs[1]`.

    The target size is read from the reference tensor at run time, so a model
    built for (None, None) inputs upsamples its logits to whatever image it is
    given, and export sees a shape op, not a Python branch.

    On TensorFlow this is TF's ResizeBilinear, the TFLite builtin
    RESIZE_BILINEAR. On JAX and PyTorch, where shapes are known when the
    layer runs, it is the same interpolation written in keras.ops (two
    gathers and a linear blend per axis); `keras.ops.image.resize` has no
    `align_corners`.

    Args:
        align_corners: map the corner pixels of input and output onto each
            other, as PyTorch's `align_corners=True` (the official EMANet
            upsampling). With False, pixel centres are aligned
            (`half_pixel_centers`, PyTorch's `align_corners=False`).

    Call arguments:
        inputs: `[features, reference]`, both (B, H, W, C); only the shape of
            `reference` is used.
    """

    def __init__(self, align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)

    def call(self, inputs):
        features, reference = _split_inputs(inputs)
        if tensorflow_ops.ENABLED:
            size = tensorflow_ops.spatial_size(reference)
            resized = tensorflow_ops.resize_bilinear(features, size, self.align_corners)
        else:
            resized = ops.cast(features, "float32")
            for axis in (1, 2):
                resized = _resize_axis(
                    resized, axis, ops.shape(reference)[axis], self.align_corners
                )
        return ops.cast(resized, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        features_shape, reference_shape = _split_inputs(input_shape)
        return (features_shape[0], reference_shape[1], reference_shape[2], features_shape[3])

    def get_config(self):
        config = super().get_config()
        config["align_corners"] = self.align_corners
        return config


def _resize_axis(tensor, axis, output_size, align_corners):
    """Linear interpolation of `tensor` along `axis` to `output_size` samples.

    TF's ResizeBilinear sampling: with `align_corners` the source coordinate of
    output pixel i is i * (in - 1) / (out - 1); otherwise (half-pixel
    centres) (i + 0.5) * in / out - 0.5, clamped to the first and last pixel.
    """
    input_size = int(tensor.shape[axis])
    output_size = int(output_size)
    positions = np.arange(output_size, dtype=np.float64)
    if align_corners:
        scale = (input_size - 1) / (output_size - 1) if output_size > 1 else 0.0
        source = positions * scale
    else:
        source = np.clip((positions + 0.5) * (input_size / output_size) - 0.5, 0.0, None)
    lower = np.minimum(np.floor(source).astype("int32"), input_size - 1)
    upper = np.minimum(lower + 1, input_size - 1)
    weight_shape = [1] * len(tensor.shape)
    weight_shape[axis] = output_size
    weight = ops.reshape(ops.convert_to_tensor((source - lower).astype("float32")), weight_shape)
    low = ops.take(tensor, ops.convert_to_tensor(lower), axis=axis)
    high = ops.take(tensor, ops.convert_to_tensor(upper), axis=axis)
    return low + (high - low) * weight


def _split_inputs(inputs):
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        raise ValueError(
            "BilinearResize expects a list `[features, reference]`, got " f"{inputs!r}."
        )
    return inputs[0], inputs[1]
