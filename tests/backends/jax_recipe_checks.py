"""The training recipe on JAX, run as programs by `test_jax_recipe.py` (the test session is TF).

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python -m tests.backends.jax_recipe_checks WORK_DIR one_device
    ... python -m tests.backends.jax_recipe_checks WORK_DIR mirrored

Trains the demo recipe, shrunk, through `ema_keras.training.train` on the
generated demo set, each run in its own process as a user runs it (no state
of one run can reach the other): `one_device` trains on one device and keeps
its variables in `one_device.npz`; `mirrored` trains data-parallel over the
two host devices (`--strategy mirrored`) on the same global batches and
writes `checks.json`: how far each variable is from the one-device run's, and
from the mirrored run's one device to its other; each run's variables before
the first step (a digest), so a difference says whether it came from the
start or from training. Then it resumes the mirrored run from its first
checkpoint, as after a kill between two checkpoints.
"""

import hashlib
import json
import os
import shutil
import sys

import keras
import numpy as np

from ema_keras.data import write_demo_dataset
from ema_keras.training import get_recipe, train
from ema_keras.training.checkpointing import ArrayCheckpoint
from tests.tiny_recipe import TINY_TRAINING

ONE_DEVICE_FILE = "one_device.npz"


def tiny_config(data_dir, strategy):
    # 5 validation images: the last batch of the mirrored run is padded with a blank one.
    return get_recipe(
        "demo", **TINY_TRAINING, data_dir=data_dir, strategy=strategy, validate=True
    )


def shard_values(variable):
    """Each device's copy of `variable`, as NumPy arrays."""
    return [np.asarray(shard.data) for shard in variable.value.addressable_shards]


def largest_relative_difference(actual, expected):
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(actual - expected))) / scale


def variables_digest(variables):
    digest = hashlib.sha256()
    for variable in variables:
        digest.update(variable.path.encode())
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()


def train_recording(config, model_dir, on_train_begin):
    """`train(config, model_dir)` with `on_train_begin(model)` called before the first step.

    train() builds its own callbacks; the recorder joins them through fit's
    callbacks argument.
    """

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            on_train_begin(self.model)

    original_fit = keras.Model.fit

    def fit_with_recorder(self, *args, callbacks=None, **kwargs):
        return original_fit(self, *args, callbacks=[Recorder(), *callbacks], **kwargs)

    keras.Model.fit = fit_with_recorder
    try:
        return train(config, model_dir)
    finally:
        keras.Model.fit = original_fit


def demo_data(work_dir):
    return write_demo_dataset(
        os.path.join(work_dir, "voc"), num_train=16, num_val=5, image_size=(64, 80), seed=3
    )


def run_one_device(work_dir):
    start = {}
    result = train_recording(
        tiny_config(demo_data(work_dir), "one_device"),
        os.path.join(work_dir, "one_device"),
        lambda model: start.update(digest=variables_digest(model.variables)),
    )
    variables = result.model.variables
    np.savez(
        os.path.join(work_dir, ONE_DEVICE_FILE),
        paths=np.array([v.path for v in variables]),
        start_digest=np.array(start["digest"]),
        val_mean_iou=np.array(result.val_mean_iou),
        **{f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)},
    )


def run_mirrored(work_dir):
    data_dir = demo_data(work_dir)
    start = {}
    mirrored = train_recording(
        tiny_config(data_dir, "mirrored"),
        os.path.join(work_dir, "mirrored"),
        lambda model: start.update(digest=variables_digest(model.variables)),
    )
    variables = mirrored.model.variables + mirrored.model.optimizer.variables
    copies_differ = [
        variable.path
        for variable in variables
        if any(
            not np.array_equal(copy, shard_values(variable)[0]) for copy in shard_values(variable)
        )
    ]
    shard_counts = sorted({len(shard_values(variable)) for variable in variables})
    with np.load(os.path.join(work_dir, ONE_DEVICE_FILE)) as one_device:
        one_device_paths = [str(path) for path in one_device["paths"]]
        expected = {path: one_device[f"v{i}"] for i, path in enumerate(one_device_paths)}
        one_device_start = str(one_device["start_digest"])
        one_device_val_mean_iou = float(one_device["val_mean_iou"])
    differences = {
        variable.path: largest_relative_difference(
            keras.ops.convert_to_numpy(variable), expected[variable.path]
        )
        for variable in mirrored.model.variables
        if variable.path in expected
    }
    report = {
        "step": mirrored.step,
        "val_mean_iou": mirrored.val_mean_iou,
        "one_device_val_mean_iou": one_device_val_mean_iou,
        "start_digests_equal": start["digest"] == one_device_start,
        "shards_per_variable": shard_counts,
        "variables_differing_between_devices": copies_differ,
        "paths_match": [v.path for v in mirrored.model.variables] == one_device_paths,
        "relative_difference_to_one_device": differences,
    }
    report.update(check_resume(data_dir, work_dir, mirrored))
    with open(os.path.join(work_dir, "checks.json"), "w") as file:
        json.dump(report, file, indent=2)
    print("jax recipe checks done")


def check_resume(data_dir, work_dir, finished):
    """Resumes a copy of the mirrored run whose index says the last checkpoint is step 1.

    That is the state a kill leaves between the checkpoints of steps 1 and 2;
    the restored variables must be those saved at step 1.
    """
    run_dir = os.path.join(work_dir, "resumed")
    shutil.copytree(finished.model_dir, run_dir)
    for name in ("summary.json", "last.keras"):
        os.remove(os.path.join(run_dir, name))
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(checkpoint_dir, ArrayCheckpoint.INDEX_FILE), "w") as file:
        json.dump({"checkpoints": ["ckpt-1.npz"]}, file)
    with np.load(os.path.join(checkpoint_dir, "ckpt-1.npz")) as stored:
        saved_bases = [stored[f"v{i}"] for i, path in enumerate(stored["paths"]) if "bases" in path]
    restored = {}

    def record_restored(model):
        restored["step"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        restored["bases"] = [
            keras.ops.convert_to_numpy(v) for v in model.variables if "bases" in v.path
        ]

    resumed = train_recording(tiny_config(data_dir, "mirrored"), run_dir, record_restored)
    return {
        "resumed_from_step": restored["step"],
        "resumed_to_step": resumed.step,
        "restored_bases_equal_saved": len(saved_bases) > 0
        and all(np.array_equal(a, b) for a, b in zip(restored["bases"], saved_bases)),
        "resumed_outputs": sorted(os.listdir(run_dir)),
    }


if __name__ == "__main__":
    assert keras.backend.backend() == "jax"
    {"one_device": run_one_device, "mirrored": run_mirrored}[sys.argv[2]](sys.argv[1])
