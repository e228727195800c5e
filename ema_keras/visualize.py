"""Label maps as coloured images, overlays on the input and legends, in the classes' own colours.

The colours and names come from the model when it carries them (a model
trained by ema-keras does: `ema_keras.models.class_info`), else from a
dataset's table (VOC's by default): `label_colours(dataset, model)`.

    colours = label_colours("voc", model)
    picture = with_legend(overlay(image, label, colours=colours), label, colours)
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ema_keras.data.datasets import get_dataset
from ema_keras.models.class_info import class_info

# Names a class gets left untinted by in overlays (VOC's, labelme2voc's, detectron2's).
BACKGROUND_NAMES = ("background", "_background_", "__background__")
_LEGEND_ROW = 16  # pixels per legend line: a swatch and the name in Pillow's default font
_LEGEND_MARGIN = 4


@dataclasses.dataclass(frozen=True)
class LabelColours:
    """How label ids are drawn: a (256, 3) uint8 colour map and the classes' names by id."""

    colormap: np.ndarray
    names: Optional[Tuple[str, ...]]

    @property
    def background_id(self):
        """The id left clear in overlays: 0 when that class is named background, else None."""
        if self.names and self.names[0].lower() in BACKGROUND_NAMES:
            return 0
        return None

    def name(self, class_id):
        if self.names and class_id < len(self.names):
            return self.names[class_id]
        return f"class {class_id}"


def label_colours(dataset="voc", model=None):
    """The model's class colours and names where it has them, the dataset's elsewhere.

    A model with a palette colours its ids with it; ids past its classes (the
    ignore label 255) keep the dataset's colours.
    """
    spec = get_dataset(dataset)
    info = class_info(model) if model is not None else None
    if info is None:
        return LabelColours(spec.colormap(), tuple(spec.class_names))
    names = info.names if info.names else (
        tuple(spec.class_names) if info.palette is None else None
    )
    return LabelColours(info.colormap(spec.colormap()), names)


def colorize(label, dataset="voc", *, colours=None):
    """(H, W) integer ids -> (H, W, 3) uint8 in `colours` (default: the dataset's palette).

    VOC: its colour map (255 is cream); Cityscapes: the official colours of
    the 19 train ids; others: see their module. Ids outside the classes get
    the dataset's ignore colour.
    """
    colours = colours or label_colours(dataset)
    return colours.colormap[np.asarray(label, dtype=np.uint8)]


def overlay(image, label, alpha=0.5, dataset="voc", *, colours=None):
    """Blends the coloured label map over an (H, W, 3) uint8 image.

    A class named background (id 0) stays clear; every other class is tinted.
    """
    colours = colours or label_colours(dataset)
    image = np.asarray(image, dtype=np.float32)
    tinted = colorize(label, colours=colours).astype(np.float32)
    label = np.asarray(label)
    if colours.background_id is None:
        foreground = np.ones(label.shape + (1,), bool)
    else:
        foreground = (label != colours.background_id)[..., None]
    blended = np.where(foreground, (1.0 - alpha) * image + alpha * tinted, image)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def classes_shown(label, num_classes=None):
    """The class ids in a label map, ascending, without the ignore label (255)."""
    ids = np.unique(np.asarray(label, np.uint8))
    ids = [int(i) for i in ids if i != 255]
    return ids if num_classes is None else [i for i in ids if i < num_classes]


def with_legend(picture, label, colours):
    """`picture` (H, W, 3 uint8) with a white strip on its right naming each class in `label`.

    One line per class present (ascending ids): its colour swatch and name.
    The strip is as tall as the picture, or taller (then the picture is
    padded below in white) when there are more classes than lines fit.
    """
    picture = np.asarray(picture, np.uint8)
    ids = classes_shown(label)
    font = ImageFont.load_default()
    texts = [colours.name(class_id) for class_id in ids]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max((measure.textlength(text, font=font) for text in texts), default=0)
    width = int(np.ceil(_LEGEND_ROW + 3 * _LEGEND_MARGIN + text_width))
    height = max(picture.shape[0], _LEGEND_MARGIN + len(ids) * _LEGEND_ROW)
    canvas = Image.new("RGB", (picture.shape[1] + width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    left = picture.shape[1] + _LEGEND_MARGIN
    for row, (class_id, text) in enumerate(zip(ids, texts)):
        top = _LEGEND_MARGIN + row * _LEGEND_ROW
        swatch = tuple(int(c) for c in colours.colormap[class_id])
        box = (left, top, left + _LEGEND_ROW - 4, top + _LEGEND_ROW - 4)
        draw.rectangle(box, fill=swatch, outline=(0, 0, 0))
        draw.text((left + _LEGEND_ROW + _LEGEND_MARGIN, top), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
