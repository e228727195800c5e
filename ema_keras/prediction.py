"""Label maps for image files: the library behind `recipes/predict.py`."""

import os

import numpy as np
from PIL import Image

from ema_keras.data.image_io import load_image, save_palette_png
from ema_keras.data.pipeline import normalize_image
from ema_keras.inference import predict_probabilities
from ema_keras.visualize import overlay

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(inputs):
    """Image files from a list of files and folders (folders: their images, sorted)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(
                os.path.join(item, name)
                for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"Input {item!r} is neither an image file nor a folder.")
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {list(inputs)}.")
    return paths


def predict_label_map(model, image, **inference_options):
    """(H, W, 3) uint8 RGB -> (H, W) uint8 class ids at the image's size."""
    batch = normalize_image(np.asarray(image)[None])
    probabilities = predict_probabilities(model, batch, **inference_options)
    return np.argmax(probabilities[0], axis=-1).astype(np.uint8)


def predict_files(model, inputs, output_dir, **inference_options):
    """Writes `<name>.png` (VOC palette label map) and `<name>_overlay.jpg` per image.

    Returns the list of label-map paths written.
    """
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for path in list_images(inputs):
        image = load_image(path)
        label = predict_label_map(model, image, **inference_options)
        stem = os.path.splitext(os.path.basename(path))[0]
        label_path = os.path.join(output_dir, f"{stem}.png")
        save_palette_png(label, label_path)
        Image.fromarray(overlay(image, label)).save(
            os.path.join(output_dir, f"{stem}_overlay.jpg"), quality=90
        )
        written.append(label_path)
    return written
