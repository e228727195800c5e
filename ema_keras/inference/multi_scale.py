"""Inference at the original image size: single scale, multi-scale + flip, sliding window.

All functions take raw RGB pixels, float32 (B, H, W, 3) in 0..255 (what
`ema_keras.data.pipeline.eval_dataset` yields), feed the model what it expects
(`ema_keras.models.model_inputs`: the pixels, or normalised for a model saved
before the models took raw pixels), and return class probabilities
(B, H, W, classes) at the input's size, so that the labels are scored where
they were drawn.
"""

import math

import numpy as np
import tensorflow as tf

from ema_keras.imagenet import IMAGENET_MEAN
from ema_keras.models.input_contract import model_inputs
from ema_keras.models.outputs import main_logits

MULTI_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _numpy_logits(model, images):
    """The model's logits as a NumPy array, on any Keras backend (the rest here is TensorFlow)."""
    return np.asarray(main_logits(model(model_inputs(model, images), training=False)))


def _tiles(length, window, stride):
    """Start offsets covering [0, length) with windows of `window` every `stride`."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def sliding_window_logits(model, images, window, stride=None):
    """Logits from overlapping `window` crops, averaged where they overlap.

    Images smaller than the window are padded bottom/right with the ImageNet
    mean pixel (0 after normalisation) and the padding is cut off again.
    """
    window_height, window_width = (window, window) if isinstance(window, int) else window
    stride = stride or (max(1, window_height * 2 // 3), max(1, window_width * 2 // 3))
    stride_height, stride_width = (stride, stride) if isinstance(stride, int) else stride
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = int(images.shape[1]), int(images.shape[2])
    padded_height, padded_width = max(height, window_height), max(width, window_width)
    mean = tf.constant(IMAGENET_MEAN, tf.float32)
    paddings = [[0, 0], [0, padded_height - height], [0, padded_width - width], [0, 0]]
    images = tf.pad(images - mean, paddings) + mean
    total, count = None, np.zeros((1, padded_height, padded_width, 1), np.float32)
    for top in _tiles(padded_height, window_height, stride_height):
        for left in _tiles(padded_width, window_width, stride_width):
            crop = images[:, top : top + window_height, left : left + window_width]
            logits = _numpy_logits(model, crop)
            if total is None:
                total = np.zeros(
                    (images.shape[0], padded_height, padded_width, logits.shape[-1]), np.float32
                )
            total[:, top : top + window_height, left : left + window_width] += logits
            count[:, top : top + window_height, left : left + window_width] += 1.0
    return (total / count)[:, :height, :width]


def _logits_at(model, images, window, stride):
    if window is None:
        return _numpy_logits(model, images)
    return sliding_window_logits(model, images, window, stride)


def predict_probabilities(model, images, *, scales=(1.0,), flip=False, window=None, stride=None):
    """Softmax probabilities averaged over `scales` (and horizontal flips).

    Each scale resizes the image bilinearly, runs the model (whole or by
    sliding `window`), resizes the logits back to the input size, and adds
    their softmax; with `flip`, the mirrored image's prediction is mirrored
    back and added too.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = int(images.shape[1]), int(images.shape[2])
    total = 0.0
    for scale in scales:
        size = tuple(max(1, int(math.floor(side * scale + 0.5))) for side in (height, width))
        scaled = images if size == (height, width) else tf.image.resize(images, size, "bilinear")
        variants = [(scaled, False)] + ([(tf.reverse(scaled, [2]), True)] if flip else [])
        for variant, mirrored in variants:
            logits = _logits_at(model, variant, window, stride)
            if mirrored:
                logits = logits[:, :, ::-1]
            if logits.shape[1:3] != (height, width):
                logits = tf.image.resize(logits, (height, width), "bilinear").numpy()
            total = total + tf.nn.softmax(logits, axis=-1).numpy()
    return total / (len(scales) * (2 if flip else 1))
