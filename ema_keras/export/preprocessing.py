"""The size policy shared by the serving graphs, the TFLite inputs and their checks.

Exported models take raw RGB pixels (0..255) and normalise them in the graph
(see `ema_keras.models.model_inputs`), so clients send images as they come.
A model exported for a fixed size gets every image on a canvas of that size
the way the official evaluation does it: an image that fits is padded
bottom/right with the ImageNet mean (0 after normalisation, the value the
network saw around its training crops); a larger image is first scaled down,
aspect ratio kept, until it fits. The logits of
the image's part of the canvas are cut out and, when the image was scaled,
resized back to its original size.
"""

import numpy as np
import tensorflow as tf

from ema_keras.imagenet import IMAGENET_MEAN

__all__ = ["IMAGENET_MEAN", "fit_to_canvas", "restore_size"]


def fit_to_canvas(images, image_size):
    """Puts a batch of same-sized images on a (height, width) canvas.

    Args:
        images: (B, H, W, 3) pixels, any real dtype, 0..255.
        image_size: (height, width) of the canvas.

    Returns:
        `(canvas, content_size)`: float32 (B, height, width, 3) pixels padded
        with the ImageNet mean, and int32 (2,) the size the images occupy in
        its top-left corner (H, W unless they had to be scaled down).
    """
    height, width = (int(v) for v in image_size)
    images = tf.cast(images, tf.float32)
    original = tf.shape(images)[1:3]
    scale = tf.minimum(
        1.0,
        tf.minimum(
            height / tf.cast(original[0], tf.float32), width / tf.cast(original[1], tf.float32)
        ),
    )
    content_size = tf.cast(tf.round(tf.cast(original, tf.float32) * scale), tf.int32)
    content_size = tf.clip_by_value(content_size, 1, [height, width])
    images = tf.cond(
        tf.reduce_all(tf.equal(content_size, original)),
        lambda: images,
        lambda: tf.image.resize(images, content_size, method="bilinear"),
    )
    mean = tf.constant(IMAGENET_MEAN, tf.float32)
    paddings = [[0, 0], [0, height - content_size[0]], [0, width - content_size[1]], [0, 0]]
    canvas = tf.pad(images - mean, paddings) + mean
    return tf.ensure_shape(canvas, [None, height, width, 3]), content_size


def restore_size(logits, content_size, original_size):
    """Cuts the image's part out of canvas logits and resizes it to `original_size`."""
    logits = logits[:, : content_size[0], : content_size[1]]
    return tf.cond(
        tf.reduce_all(tf.equal(content_size, original_size)),
        lambda: logits,
        lambda: tf.image.resize(logits, original_size, method="bilinear"),
    )


def canvas_numpy(image, image_size):
    """One uint8 (H, W, 3) image on its canvas: (float32 (1, h, w, 3) canvas, (ch, cw))."""
    canvas, content_size = fit_to_canvas(np.asarray(image)[None], image_size)
    return canvas.numpy(), tuple(int(v) for v in content_size.numpy())
