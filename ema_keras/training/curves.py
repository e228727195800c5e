"""The training curve: loss and validation mIoU against the step, as a PNG.

Drawn with Pillow (a dependency already) rather than matplotlib (not one), so
every training run leaves its curve: loss on the left axis, validation mIoU
on a 0..1 right axis, the step along the bottom.
"""

import csv
import json
import math
import os

from PIL import Image, ImageDraw, ImageFont

HISTORY_FILE = "history.csv"
CURVE_FILE = "training_curve.png"

SIZE = (700, 400)  # width, height in pixels
PLOT_BOX = (70, 50, 630, 345)  # left, top, right, bottom of the plotting area
LOSS_COLOR = (31, 119, 180)  # matplotlib's tab:blue and tab:green
MIOU_COLOR = (44, 160, 44)
_AXIS_COLOR = (60, 60, 60)
_GRID_COLOR = (225, 225, 225)


def _number(text):
    """A CSV cell as a float; None for the blanks and "NA" that CSVLogger writes."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_history(model_dir):
    """Rows of history.csv keyed by the step at the end of each chunk.

    A resumed run appends to the same file and may repeat a chunk that was
    interrupted; the last row written for a step wins.
    """
    with open(os.path.join(model_dir, "train_config.json")) as file:
        config = json.load(file)
    steps_per_epoch = min(config["steps_per_checkpoint"], config["steps"])
    rows = {}
    with open(os.path.join(model_dir, HISTORY_FILE)) as file:
        for row in csv.DictReader(file):
            step = (int(row["epoch"]) + 1) * steps_per_epoch
            numbers = {key: _number(value) for key, value in row.items()}
            rows[step] = {key: value for key, value in numbers.items() if value is not None}
    return dict(sorted(rows.items()))


def plot_training_curve(model_dir):
    """Writes training_curve.png from history.csv; returns its path, or None without history."""
    if not os.path.isfile(os.path.join(model_dir, HISTORY_FILE)):
        return None
    rows = read_history(model_dir)
    if not rows:
        return None
    steps = list(rows)
    miou_keys = [k for k in rows[steps[-1]] if k.startswith("val_") and k.endswith("mean_iou")]
    path = os.path.join(model_dir, CURVE_FILE)
    draw_training_curve(
        path,
        steps,
        [rows[step].get("loss") for step in steps],
        [rows[step].get(miou_keys[0]) for step in steps] if miou_keys else None,
    )
    return path


def _nice_ticks(low, high, count=5):
    """About `count` round tick values covering [low, high] (1, 2 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    return [first + i * step for i in range(int(round((last - first) / step)) + 1)]


def _label(value):
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}"


def draw_training_curve(path, steps, losses, mious=None):
    """Writes a PNG of `losses` (left axis) and `mious` (right axis, 0..1) against `steps`.

    Missing values (None) are skipped; the y axis of the loss starts at 0 when
    the losses are positive, so the drawn height is proportional to the loss.
    """
    left, top, right, bottom = PLOT_BOX
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)

    x_low, x_high = min(steps), max(steps)
    if x_low == x_high:  # one point: put it in the middle
        x_low, x_high = x_low - 1, x_high + 1
    x_ticks = [t for t in _nice_ticks(x_low, x_high) if x_low <= t <= x_high and t == int(t)]
    known_losses = [v for v in losses if v is not None and math.isfinite(v)]
    y_ticks = _nice_ticks(min(0.0, *known_losses) if known_losses else 0.0,
                          max(known_losses) if known_losses else 1.0)
    y_low, y_high = y_ticks[0], y_ticks[-1]

    def x_of(step):
        return left + (step - x_low) / (x_high - x_low) * (right - left)

    def y_of(value, low, high):
        return bottom - (value - low) / (high - low) * (bottom - top)

    # Grid and ticks: steps below, loss left, mIoU right.
    for tick in x_ticks:
        x = x_of(tick)
        draw.line([(x, top), (x, bottom)], fill=_GRID_COLOR)
        draw.line([(x, bottom), (x, bottom + 4)], fill=_AXIS_COLOR)
        draw.text((x, bottom + 7), _label(tick), fill=_AXIS_COLOR, font=font, anchor="mt")
    for tick in y_ticks:
        y = y_of(tick, y_low, y_high)
        draw.line([(left, y), (right, y)], fill=_GRID_COLOR)
        draw.line([(left - 4, y), (left, y)], fill=_AXIS_COLOR)
        draw.text((left - 7, y), _label(tick), fill=LOSS_COLOR, font=font, anchor="rm")
    if mious is not None:
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = y_of(tick, 0.0, 1.0)
            draw.line([(right, y), (right + 4, y)], fill=_AXIS_COLOR)
            draw.text((right + 7, y), _label(tick), fill=MIOU_COLOR, font=font, anchor="lm")
        draw.text((right, top - 8), "validation mIoU", fill=MIOU_COLOR, font=font, anchor="rd")
    draw.rectangle([left, top, right, bottom], outline=_AXIS_COLOR)
    draw.text(((left + right) / 2, bottom + 25), "step", fill=_AXIS_COLOR, font=font, anchor="mt")
    draw.text((left, top - 8), "loss", fill=LOSS_COLOR, font=font, anchor="ld")

    # The curves, each a line through round markers.
    series = [(losses, LOSS_COLOR, y_low, y_high, "training loss")]
    if mious is not None:
        series.append((mious, MIOU_COLOR, 0.0, 1.0, "validation mIoU"))
    for values, color, low, high, _ in series:
        points = [
            (x_of(step), y_of(value, low, high))
            for step, value in zip(steps, values)
            if value is not None and math.isfinite(value)
        ]
        if len(points) > 1:
            draw.line(points, fill=color, width=2, joint="curve")
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)

    # Legend, centred above the plot.
    x = (left + right) / 2 - 80 * len(series)
    for _, color, _, _, name in series:
        draw.line([(x, 18), (x + 24, 18)], fill=color, width=2)
        draw.text((x + 30, 18), name, fill=_AXIS_COLOR, font=font, anchor="lm")
        x += 160

    image.save(path)
    return path
