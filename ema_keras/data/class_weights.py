"""Class weights of the cross-entropy (`--class_weights`), from pixel counts or a file.

    none                    no weights: every valid pixel counts the same
    inverse_frequency       w_c = total / (present * count_c)
    inverse_sqrt_frequency  w_c = total / (sum_k sqrt(count_k) * sqrt(count_c))
    <file>                  one weight per class: one number a line, or a JSON list

`total` is the number of counted pixels and the sum runs over the `present`
classes (count > 0). Both modes are normalised so that the pixel-weighted mean
weight is 1, sum_c count_c * w_c = total: the loss keeps its scale, and so
the learning rate its meaning. A class with no pixel in the counts gets the
largest weight of the present ones (it is the rarest class): its weight
multiplies no pixel of the counted labels, and a 0 would silently drop the
class should it appear in labels the counts did not see. Each such class is
logged. The losses (`ema_keras.losses`) take the list as `class_weights`.
"""

import json
import math
import os

from absl import logging

from ema_keras.data.errors import DataError

CLASS_WEIGHT_MODES = ("none", "inverse_frequency", "inverse_sqrt_frequency")
# The power of the count each mode divides by.
_POWERS = {"inverse_frequency": 1.0, "inverse_sqrt_frequency": 0.5}


def is_class_weights_setting(setting):
    """Whether `setting` is a mode name or an existing file (the cheap check of --class_weights)."""
    return setting in CLASS_WEIGHT_MODES or os.path.isfile(setting)


def class_weights_from_counts(pixel_counts, mode):
    """One weight per class from the classes' pixel counts (see the module docstring)."""
    if mode not in _POWERS:
        raise ValueError(f"mode must be one of {sorted(_POWERS)}, got {mode!r}.")
    counts = [int(count) for count in pixel_counts]
    if any(count < 0 for count in counts):
        raise ValueError(f"pixel counts must be >= 0, got {counts}.")
    present = [count for count in counts if count > 0]
    if not present:
        raise ValueError("no class has a pixel: class weights need labelled pixels.")
    power = _POWERS[mode]
    scale = sum(present) / sum(count ** (1.0 - power) for count in present)
    weights = [scale / count**power if count > 0 else None for count in counts]
    largest = max(weight for weight in weights if weight is not None)
    absent = [index for index, weight in enumerate(weights) if weight is None]
    if absent:
        logging.info(
            "Class weights (%s): class(es) %s have no pixel in the training labels; they get "
            "the largest weight, %.4g.", mode, ", ".join(map(str, absent)), largest,
        )
    return [largest if weight is None else weight for weight in weights]


def read_class_weights_file(path, num_classes):
    """The `num_classes` weights a file lists: one number a line (`#` comments), or a JSON list.

    Raises DataError naming the file for another count, a value that is not a
    finite number, a negative one, or weights that are all 0.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except OSError as error:
        raise DataError(path, f"cannot read the class weights ({error.strerror})") from None
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(path, f"is not a JSON list of numbers ({error.msg})") from None
    else:
        values = [line.split("#")[0].strip() for line in text.splitlines()]
        values = [value for value in values if value]
    weights = []
    for position, value in enumerate(values, start=1):
        try:
            if isinstance(value, bool):
                raise ValueError
            weight = float(value)
        except (TypeError, ValueError):
            raise DataError(path, f"weight {position} is not a number: {value!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise DataError(path, f"weight {position} must be a finite number >= 0, got {value}")
        weights.append(weight)
    if len(weights) != num_classes:
        raise DataError(
            path, f"lists {len(weights)} class weight(s); the model has {num_classes} classes"
        )
    if not any(weights):
        raise DataError(path, "every class weight is 0; at least one must be > 0")
    return weights


def resolve_class_weights(setting, pixel_counts, num_classes):
    """The weights `--class_weights setting` gives (None for `none`), one per class.

    `pixel_counts` (one per class, e.g. the pre-training check's) is read by
    the two frequency modes only, and must hold `num_classes` counts.
    """
    if setting == "none":
        return None
    if setting in _POWERS:
        if pixel_counts is None or len(pixel_counts) != num_classes:
            raise ValueError(
                f"--class_weights {setting} needs {num_classes} pixel counts, got "
                f"{None if pixel_counts is None else len(pixel_counts)}."
            )
        return class_weights_from_counts(pixel_counts, setting)
    return read_class_weights_file(setting, num_classes)
