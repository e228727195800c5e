"""The training curve: loss and validation mIoU against the step, as a PNG."""

import csv
import json
import os

HISTORY_FILE = "history.csv"
CURVE_FILE = "training_curve.png"


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
    """Writes training_curve.png; returns its path, or None without matplotlib or history."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not os.path.isfile(os.path.join(model_dir, HISTORY_FILE)):
        return None
    rows = read_history(model_dir)
    if not rows:
        return None
    steps = list(rows)
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(steps, [rows[s].get("loss") for s in steps], "o-", label="training loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("loss")
    miou_keys = [k for k in rows[steps[-1]] if k.startswith("val_") and k.endswith("mean_iou")]
    if miou_keys:
        miou_axis = loss_axis.twinx()
        miou_axis.plot(
            steps, [rows[s].get(miou_keys[0]) for s in steps], "s-", color="tab:green",
            label="validation mIoU",
        )
        miou_axis.set_ylabel("validation mIoU")
        miou_axis.set_ylim(0, 1)
    figure.legend(loc="upper center")
    figure.tight_layout()
    path = os.path.join(model_dir, CURVE_FILE)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
