"""What a training folder records about its run, and the refusal to repurpose it.

A run's folder holds `train_config.json` (the settings it was started with,
the class count resolved from the data) and `classes.json` (the class table:
names, palette, how masks encode them). Running the same command again
resumes; a command that would make the folder another run (another dataset,
data folder, class list, preset or split) is refused naming what differs,
before anything is read or written, instead of rewriting the record under
checkpoints of another model.
"""

import dataclasses
import json
import os

from ema_keras.data.class_table import ClassTable
from ema_keras.training.config import SettingsError, TrainConfig

CONFIG_FILE = "train_config.json"
CLASSES_FILE = "classes.json"
# The settings that make a run what it is; the others (steps, batch, logging,
# learning rate, ...) may change between a run and its resumption.
IDENTITY = (
    "dataset", "data_dir", "preset", "num_classes", "train_split", "val_split",
    "train_tfrecords", "val_fraction", "freeze_backbone",
)  # fmt: skip


def _write_json(value, path):
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
    os.replace(partial, path)


def _stored_values(model_dir):
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_config(model_dir):
    """The `TrainConfig` a training run in `model_dir` was started with."""
    values = _stored_values(model_dir)
    if values is None:
        path = os.path.join(model_dir, CONFIG_FILE)
        raise FileNotFoundError(f"{path} does not exist: is {model_dir!r} a training folder?")
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    values = {key: value for key, value in values.items() if key in known}
    values["scales"] = tuple(values["scales"])
    return TrainConfig(**values)


def load_class_table(model_dir):
    """The ClassTable a run recorded, or None (runs of earlier versions record none)."""
    path = os.path.join(model_dir, CLASSES_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return ClassTable.from_json(json.load(handle))


def _same(key, stored, wanted):
    if key == "data_dir" and stored and wanted:
        return os.path.abspath(stored) == os.path.abspath(wanted)
    if key == "num_classes" and wanted is None:
        return True  # the data decides; compared through the class table
    return stored == wanted


def refuse_other_run(config, model_dir):
    """A SettingsError naming each identity setting in which `config` differs from the run's."""
    stored = _stored_values(model_dir)
    if stored is None:
        return
    differ = [
        f"--{key} {stored.get(key)!r} there, {getattr(config, key)!r} now"
        for key in IDENTITY
        if key in stored and not _same(key, stored[key], getattr(config, key))
    ]
    if differ:
        raise SettingsError(
            f"--model_dir {model_dir} holds another run ({'; '.join(differ)}): train into a new "
            "--model_dir, or repeat that run's settings to resume it."
        )


def refuse_other_classes(class_table, model_dir):
    """A SettingsError when the data's classes are not the ones the run was started with."""
    recorded = load_class_table(model_dir)
    if recorded is None or recorded.names == class_table.names:
        return
    raise SettingsError(
        f"--model_dir {model_dir} was trained on the classes {list(recorded.names)}; the data "
        f"now declares {list(class_table.names)}: train into a new --model_dir."
    )


def record_run(config, class_table, model_dir):
    """Writes `train_config.json` and `classes.json` (atomically) into `model_dir`."""
    os.makedirs(model_dir, exist_ok=True)
    _write_json(dataclasses.asdict(config), os.path.join(model_dir, CONFIG_FILE))
    _write_json(class_table.to_json(), os.path.join(model_dir, CLASSES_FILE))
