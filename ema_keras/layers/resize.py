"""Bilinear resizing of a feature map to the spatial size of another tensor."""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="ema_keras")
class BilinearResize(keras.layers.Layer):
    """Resizes `inputs[0]` bilinearly to the height and width of `inputs[1]`.

    The target size is read from the reference tensor at run time, so a model
    built for (None, None) inputs upsamples its logits to whatever image it is
    given, and export sees a shape op, not a Python branch.

    Args:
        align_corners: map the corner pixels of input and output onto each
            other, as PyTorch's `align_corners=True` (the official EMANet
            upsampling). With False, pixel centres are aligned
            (`half_pixel_centers`, PyTorch's `align_corners=False`). Both are
            the TFLite builtin RESIZE_BILINEAR.

    Call arguments:
        inputs: `[features, reference]`, both (B, H, W, C); only the shape of
            `reference` is used.
    """

    def __init__(self, align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)

    def call(self, inputs):
        features, reference = _split_inputs(inputs)
        size = tf.shape(reference)[1:3]
        resized = tf.raw_ops.ResizeBilinear(
            images=features,
            size=size,
            align_corners=self.align_corners,
            half_pixel_centers=not self.align_corners,
        )
        return ops.cast(resized, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        features_shape, reference_shape = _split_inputs(input_shape)
        return (features_shape[0], reference_shape[1], reference_shape[2], features_shape[3])

    def get_config(self):
        config = super().get_config()
        config["align_corners"] = self.align_corners
        return config


def _split_inputs(inputs):
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        raise ValueError(
            "BilinearResize expects a list `[features, reference]`, got " f"{inputs!r}."
        )
    return inputs[0], inputs[1]
