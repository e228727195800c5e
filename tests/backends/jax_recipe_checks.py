"""The training recipe on JAX, run as a program by `test_jax_recipe.py` (the test session is TF).

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python -m tests.backends.jax_recipe_checks WORK_DIR

Trains the demo recipe, shrunk, through `ema_keras.training.train` on the
generated demo set: data-parallel over the two host devices (`--strategy
mirrored`), then on one device with the same global batch. Writes, in
WORK_DIR, each run's folder (`mirrored/`, `one_device/`) and `checks.json`:
how far each variable is from one device to the other, and from the mirrored
run's one device to its other. Then resumes the mirrored run from its first
checkpoint, as after a kill between two checkpoints.
"""

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


def main(work_dir):
    assert keras.backend.backend() == "jax"
    data_dir = write_demo_dataset(
        os.path.join(work_dir, "voc"), num_train=16, num_val=5, image_size=(64, 80), seed=3
    )
    mirrored = train(tiny_config(data_dir, "mirrored"), os.path.join(work_dir, "mirrored"))
    variables = mirrored.model.variables + mirrored.model.optimizer.variables
    copies_differ = [
        variable.path
        for variable in variables
        if any(
            not np.array_equal(copy, shard_values(variable)[0]) for copy in shard_values(variable)
        )
    ]
    shard_counts = sorted({len(shard_values(variable)) for variable in variables})
    one_device = train(tiny_config(data_dir, "one_device"), os.path.join(work_dir, "one_device"))
    differences = {
        expected.path: largest_relative_difference(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected)
        )
        for expected, actual in zip(one_device.model.variables, mirrored.model.variables)
    }
    paths_match = [v.path for v in one_device.model.variables] == [
        v.path for v in mirrored.model.variables
    ]
    report = {
        "step": mirrored.step,
        "val_mean_iou": mirrored.val_mean_iou,
        "one_device_val_mean_iou": one_device.val_mean_iou,
        "shards_per_variable": shard_counts,
        "variables_differing_between_devices": copies_differ,
        "paths_match": paths_match,
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

    class RecordRestored(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            restored["step"] = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            restored["bases"] = [
                keras.ops.convert_to_numpy(v) for v in self.model.variables if "bases" in v.path
            ]

    # train() builds its own callbacks; the recorder joins them through fit's callbacks argument.
    original_fit = keras.Model.fit

    def fit_with_recorder(self, *args, callbacks=None, **kwargs):
        return original_fit(self, *args, callbacks=[RecordRestored(), *callbacks], **kwargs)

    keras.Model.fit = fit_with_recorder
    try:
        resumed = train(tiny_config(data_dir, "mirrored"), run_dir)
    finally:
        keras.Model.fit = original_fit
    return {
        "resumed_from_step": restored["step"],
        "resumed_to_step": resumed.step,
        "restored_bases_equal_saved": len(saved_bases) > 0
        and all(np.array_equal(a, b) for a, b in zip(restored["bases"], saved_bases)),
        "resumed_outputs": sorted(os.listdir(run_dir)),
    }


if __name__ == "__main__":
    main(sys.argv[1])
