"""The classes a segmenter was trained on: their names and display colours, saved with it.

`EMANet` and `MobileEMANet` take `class_names` and `palette` (one [r, g, b]
per class) and keep them in their config, so that a `.keras` file says what
its ids mean and how to draw them: `predict.py` colours its label maps and
overlays (and writes the legend) from them, `eval_voc.py` names its per-class
scores. A model saved before they existed, or built without them, has none
(`class_info` answers None) and its tools fall back to a dataset's classes.

    model = build_preset("emanet_tiny_demo", num_classes=3)
    set_class_info(model, ["background", "scratch", "dent"],
                   [[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    model.save("best.keras")  # keras.models.load_model(...) has them too
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np

ARGUMENTS = ("class_names", "palette")  # the constructor arguments (and attributes) holding them


@dataclasses.dataclass(frozen=True)
class ClassInfo:
    """The classes of a model, by id; either field may be None (not given).

    Attributes:
        names: one name per class.
        palette: one (r, g, b) per class, each 0..255.
    """

    names: Optional[Tuple[str, ...]]
    palette: Optional[Tuple[Tuple[int, int, int], ...]]

    def colormap(self, base):
        """(256, 3) uint8: `base` (a 256-colour map, e.g. VOC's) with the classes' colours first.

        Ids past the classes (the ignore label 255) keep `base`'s colours.
        """
        colormap = np.array(base, np.uint8).reshape(256, 3)
        if self.palette:
            colormap[: len(self.palette)] = np.asarray(self.palette, np.uint8)
        return colormap


def checked_class_info(class_names, palette, num_classes):
    """`class_names` and `palette` as the models store them (lists), or a ValueError.

    Each may be None. Names must be non-empty strings, one per class; colours
    [r, g, b] with integers 0..255, one per class.
    """
    num_classes = int(num_classes)
    if class_names is not None:
        if isinstance(class_names, str):
            raise ValueError(
                f"`class_names` must be a list of names, got the string {class_names!r}."
            )
        class_names = list(class_names)
        if len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` has {len(class_names)} names for {num_classes} classes."
            )
        for index, name in enumerate(class_names):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(
                    f"`class_names[{index}]` must be a non-empty string, got {name!r}."
                )
    if palette is not None:
        colours = []
        for index, colour in enumerate(palette):
            values = np.asarray(colour).ravel().tolist() if np.ndim(colour) else [colour]
            if (
                len(values) != 3
                or not all(isinstance(v, (int, float)) and float(v).is_integer() for v in values)
                or not all(0 <= v <= 255 for v in values)
            ):
                raise ValueError(
                    f"`palette[{index}]` must be [r, g, b] with integers 0..255, got {colour!r}."
                )
            colours.append([int(v) for v in values])
        if len(colours) != num_classes:
            raise ValueError(f"`palette` has {len(colours)} colours for {num_classes} classes.")
        palette = colours
    return class_names, palette


def class_info(model):
    """The model's `ClassInfo`, or None when it carries neither names nor colours.

    Works for any model: it reads the `class_names` and `palette` attributes
    where they exist (an EMANet's or MobileEMANet's, a loaded file's too).
    """
    names = getattr(model, "class_names", None)
    palette = getattr(model, "palette", None)
    if names is None and palette is None:
        return None
    return ClassInfo(
        names=None if names is None else tuple(str(name) for name in names),
        palette=None if palette is None else tuple(tuple(int(c) for c in rgb) for rgb in palette),
    )


def set_class_info(model, names, palette):
    """Gives a built model its class names and palette (None: none), saved with it from now on.

    `model.save` then writes them in its config, `keras.models.load_model`
    returns them, and `keras.models.clone_model` keeps them.

    Raises:
        TypeError: the model's config cannot hold them (not an EMANet or
            MobileEMANet, nor another model taking `class_names` and `palette`).
        ValueError: a length other than the model's number of classes, or a
            colour outside 0..255 (see `checked_class_info`).
    """
    arguments = getattr(type(model), "config_arguments", lambda: ())()
    if not all(argument in arguments for argument in ARGUMENTS):
        raise TypeError(
            f"A {type(model).__name__} does not save class names and a palette: build an "
            "EMANet or MobileEMANet (they take class_names= and palette=)."
        )
    model.class_names, model.palette = checked_class_info(names, palette, model.num_classes)
