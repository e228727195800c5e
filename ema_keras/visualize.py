"""Label maps as coloured images and overlays on the input, in each dataset's palette."""

import numpy as np

from ema_keras.data.datasets import get_dataset


def colorize(label, dataset="voc"):
    """(H, W) integer ids -> (H, W, 3) uint8 in the dataset's palette.

    VOC: its colour map (255 is cream); Cityscapes: the official colours of
    the 19 train ids; others: see their module. Ids outside the classes get
    the dataset's ignore colour.
    """
    return get_dataset(dataset).colormap()[np.asarray(label, dtype=np.uint8)]


def overlay(image, label, alpha=0.5, dataset="voc"):
    """Blends the coloured label map over an (H, W, 3) uint8 image.

    A class named background (VOC's and PASCAL Context-60's id 0) stays
    clear; every other class is tinted.
    """
    spec = get_dataset(dataset)
    image = np.asarray(image, dtype=np.float32)
    colours = colorize(label, dataset).astype(np.float32)
    label = np.asarray(label)
    has_background = spec.class_names[0] == "background"
    foreground = (label > 0 if has_background else np.ones(label.shape, bool))[..., None]
    blended = np.where(foreground, (1.0 - alpha) * image + alpha * colours, image)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
