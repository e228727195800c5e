"""Optional extra augmentations from Keras' own preprocessing layers, 255-safe.

Not part of the official EMANet recipe (scale, crop, flip); offered for small
datasets such as the demo set. The `augmentation=` hook of
`ema_keras.data.pipeline.train_dataset` speaks Keras' own format, a dict of
`images` and `segmentation_masks`, so a Keras core image layer (which applies
the same random transform to both and samples the masks nearest-neighbour)
plugs in as it is: `augmentation=keras.layers.RandomRotation(0.05)`. With its
default `fill_mode="reflect"` every pixel keeps a real label.

`KerasAugmentation` bundles a few of those layers for the case where uncovered
pixels should be ignored rather than reflected (`fill_mode="constant"`), which
serves here without keras-cv (whose 0.9 release returns float masks and whose
RandomCrop rejects masks). Two details would lose the ignore label and are
handled:

- geometric layers fill uncovered pixels with one constant (0 by default,
  i.e. background): the mask goes in shifted by +1, so that the fill 0 can be
  told apart and turned into 255, and the image goes in minus the ImageNet
  mean, so that its fill is the mean (0 after normalisation), like the padding;
- masks come back as float32: they are rounded back to int32.

Use: `train_dataset(..., augmentation=KerasAugmentation(rotation_degrees=10,
brightness=0.2))`. Batches are augmented one after the other (the layers keep
their random state in a variable), so a seed gives the same stream each time
a new pipeline is built.
"""

import keras
import tensorflow as tf

from ema_keras.data.voc import IGNORE_LABEL


class KerasAugmentation:
    """Colour jitter, rotation and zoom on `{"images", "segmentation_masks"}` batches.

    Takes and returns the dict the `augmentation=` hook passes: images float32
    (B, H, W, 3) in 0..255, masks int32 (B, H, W, 1) with 255 = ignore.
    """

    def __init__(
        self,
        *,
        rotation_degrees=0.0,
        zoom=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        seed=None,
    ):
        for name, value in (
            ("rotation_degrees", rotation_degrees),
            ("zoom", zoom),
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
            ("hue", hue),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if zoom >= 1:
            raise ValueError(f"zoom must be < 1 (a fraction of the size), got {zoom}")
        self.color_layers = []
        if brightness or contrast or saturation or hue:
            self.color_layers.append(
                keras.layers.RandomColorJitter(
                    value_range=(0, 255),
                    brightness_factor=brightness or None,
                    contrast_factor=contrast or None,
                    saturation_factor=(
                        (max(0.0, 0.5 - saturation / 2), 0.5 + saturation / 2)
                        if saturation
                        else None
                    ),
                    hue_factor=hue or None,
                    seed=seed,
                )
            )
        self.geometric_layers = []
        if rotation_degrees:
            self.geometric_layers.append(
                keras.layers.RandomRotation(
                    rotation_degrees / 360.0, fill_mode="constant", fill_value=0.0, seed=seed
                )
            )
        if zoom:
            self.geometric_layers.append(
                keras.layers.RandomZoom(
                    (-zoom, zoom), fill_mode="constant", fill_value=0.0, seed=seed
                )
            )

    def __call__(self, data):
        from ema_keras.imagenet import IMAGENET_MEAN

        images = tf.cast(data["images"], tf.float32)
        masks = tf.cast(data["segmentation_masks"], tf.int32)
        for layer in self.color_layers:
            images = tf.clip_by_value(layer(images, training=True), 0.0, 255.0)
        if self.geometric_layers:
            mean = tf.constant(IMAGENET_MEAN, tf.float32)
            shifted = {
                "images": images - mean,
                "segmentation_masks": tf.cast(masks, tf.float32) + 1.0,
            }
            for layer in self.geometric_layers:
                shifted = layer(shifted, training=True)
            images = shifted["images"] + mean
            masks = tf.cast(tf.round(shifted["segmentation_masks"]), tf.int32)
            masks = tf.where(masks == 0, IGNORE_LABEL, masks - 1)
        return {"images": images, "segmentation_masks": masks}
