"""Checkpoints that survive a killed process, and the callbacks that write them.

Resume works in chunks ("epochs" of `steps_per_checkpoint` steps): a checkpoint
is written only at a chunk's end and only while the loss is finite, so a run
that is killed restarts from the last complete chunk with the same optimizer
state and step counter (hence the same learning-rate position).

TensorFlow writes a checkpoint's data under a temporary name, renames it, and
only then rewrites the small `checkpoint` index file atomically, so a kill in
the middle of a save leaves the previous checkpoint as the latest one.
`ArrayCheckpoint`, for the other backends, keeps the same promise with its own
files: the data is written under a temporary name and renamed, and only then
is the small index rewritten (also by a rename).
"""

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

from ema_keras.training.errors import SettingsError


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint was kept."""


class TrainingCheckpoint:
    """A `tf.train.CheckpointManager` over the model and its optimizer.

    Non-chief workers of a multi-worker run save (the save is collective) into
    a scratch folder of their own that is removed afterwards, as TensorFlow
    recommends; only the chief's folder is the real checkpoint.
    """

    def __init__(self, model, directory, *, chief=True, worker_id=0, max_to_keep=3):
        self.model = model
        self.directory = directory if chief else os.path.join(directory, f"scratch_{worker_id}")
        self.chief = chief
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.directory, max_to_keep=max_to_keep
        )

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore_latest(self):
        """Restores the newest complete checkpoint; returns its step (0 if none)."""
        # Optimizer slots must exist before restoring into them.
        self.model.optimizer.build(self.model.trainable_variables)
        latest = tf.train.latest_checkpoint(self.directory)
        if latest is None:
            return 0
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return int(self.model.optimizer.iterations.numpy())

    def save(self):
        step = int(self.model.optimizer.iterations.numpy())
        path = self.manager.save(checkpoint_number=step)
        if not self.chief:
            tf.io.gfile.rmtree(self.directory)
        return path


class ArrayCheckpoint:
    """The model's and optimizer's variables in one `.npz` per checkpoint, on any backend.

    Same interface as `TrainingCheckpoint` (`latest`, `restore_latest`,
    `save`), for backends where `tf.train.Checkpoint` cannot see the
    variables (JAX, PyTorch); single process, so every save is the chief's.
    Variables are stored in their order in `model.variables` and
    `optimizer.variables` (with their paths, for people reading the file); a
    restore checks their shapes.
    """

    INDEX_FILE = "checkpoint.json"

    def __init__(self, model, directory, *, max_to_keep=3):
        self.model = model
        self.directory = directory
        self.max_to_keep = max_to_keep

    def _variables(self):
        return list(self.model.variables) + list(self.model.optimizer.variables)

    def _index(self):
        path = os.path.join(self.directory, self.INDEX_FILE)
        if not os.path.isfile(path):
            return []
        with open(path) as file:
            return json.load(file)["checkpoints"]

    @property
    def latest(self):
        names = self._index()
        return os.path.join(self.directory, names[-1]) if names else None

    def restore_latest(self):
        """Restores the newest complete checkpoint; returns its step (0 if none)."""
        self.model.optimizer.build(self.model.trainable_variables)
        latest = self.latest
        if latest is None:
            return 0
        variables = self._variables()
        with np.load(latest) as stored:
            arrays = [stored[f"v{index}"] for index in range(len(stored["paths"]))]
        # Shapes, not paths, tell another model: paths of auto-named objects
        # (`seed_generator_1`) depend on what the process built before.
        shapes = [tuple(array.shape) for array in arrays]
        if shapes != [tuple(variable.shape) for variable in variables]:
            raise SettingsError(
                f"{latest} holds another model's variables ({len(arrays)} variables, this model "
                f"has {len(variables)}, or other shapes): was --preset or --num_classes changed? "
                "Use a new --model_dir."
            )
        for variable, array in zip(variables, arrays):
            variable.assign(array)
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def save(self):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        os.makedirs(self.directory, exist_ok=True)
        name = f"ckpt-{step}.npz"
        variables = self._variables()
        arrays = {f"v{i}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(variables)}
        temporary = os.path.join(self.directory, name + ".partial")
        with open(temporary, "wb") as file:
            np.savez(file, paths=np.array([variable.path for variable in variables]), **arrays)
        os.replace(temporary, os.path.join(self.directory, name))
        names = [kept for kept in self._index() if kept != name] + [name]
        index = os.path.join(self.directory, self.INDEX_FILE)
        with open(index + ".partial", "w") as file:
            json.dump({"checkpoints": names[-self.max_to_keep :]}, file)
        os.replace(index + ".partial", index)
        for old in names[: -self.max_to_keep]:
            os.remove(os.path.join(self.directory, old))
        return os.path.join(self.directory, name)


def chunk_plan(total_steps, steps_per_checkpoint):
    """(epochs, steps_per_epoch) for fit, each epoch ending on a checkpoint."""
    if total_steps < 1:
        raise SettingsError(f"--steps must be >= 1, got {total_steps}.")
    if steps_per_checkpoint < 1:
        raise SettingsError(f"--steps_per_checkpoint must be >= 1, got {steps_per_checkpoint}.")
    steps_per_checkpoint = min(steps_per_checkpoint, total_steps)
    if total_steps % steps_per_checkpoint:
        raise SettingsError(
            f"--steps ({total_steps}) must be a multiple of --steps_per_checkpoint "
            f"({steps_per_checkpoint}) so that the run ends on a checkpoint."
        )
    return total_steps // steps_per_checkpoint, steps_per_checkpoint


class CheckpointAndGuard(keras.callbacks.Callback):
    """Saves a checkpoint at each epoch end; stops at the first non-finite loss.

    A non-finite loss stops training before the next save, so the latest
    checkpoint is the last good state; `diverged_at` then holds the step.
    """

    def __init__(self, training_checkpoint):
        super().__init__()
        self.training_checkpoint = training_checkpoint
        self.diverged_at = None
        self.diverged_loss = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = _step(self.model)
            self.diverged_loss = float(loss)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is None:
            self.training_checkpoint.save()

    def raise_if_diverged(self):
        if self.diverged_at is not None:
            raise TrainingDiverged(
                f"Training stopped: the loss became {self.diverged_loss} at step "
                f"{self.diverged_at}. The last good checkpoint is kept: "
                f"{self.training_checkpoint.latest or 'none was written yet'}."
            )


def save_model_atomically(model, path):
    """Writes a `.keras` file under a temporary name, then renames it into place."""
    temporary = path[: -len(".keras")] + ".partial.keras"
    model.save(temporary)
    os.replace(temporary, path)
    return path


class BestModelExport(keras.callbacks.Callback):
    """Writes `best.keras` whenever the monitored validation value improves.

    The best value so far is kept in `<path>.json`, so a resumed run only
    replaces the file with a better model.
    """

    def __init__(self, path, monitor="val_mean_iou", enabled=True):
        super().__init__()
        self.path = path
        self.record_path = path + ".json"
        self.monitor = monitor
        self.enabled = enabled
        self.best = -math.inf
        if os.path.exists(self.record_path):
            with open(self.record_path) as record:
                self.best = float(json.load(record)["value"])

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.enabled and value is not None and float(value) > self.best:
            self.best = float(value)
            save_model_atomically(self.model, self.path)
            step = _step(self.model)
            with open(self.record_path, "w") as record:
                json.dump({"monitor": self.monitor, "value": self.best, "step": step}, record)


def _step(model):
    """The optimizer's step count, as a Python int on any backend."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))
