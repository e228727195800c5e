"""Label maps as VOC-coloured images and overlays on the input."""

import numpy as np

from ema_keras.data.voc import voc_colormap


def colorize(label):
    """(H, W) integer ids -> (H, W, 3) uint8 in the VOC colour map (255 is cream)."""
    return voc_colormap()[np.asarray(label, dtype=np.uint8)]


def overlay(image, label, alpha=0.5):
    """Blends the coloured label map over an (H, W, 3) uint8 image; background stays clear."""
    image = np.asarray(image, dtype=np.float32)
    colours = colorize(label).astype(np.float32)
    foreground = (np.asarray(label) > 0)[..., None]
    blended = np.where(foreground, (1.0 - alpha) * image + alpha * colours, image)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
