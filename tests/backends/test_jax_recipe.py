"""`recipes/train_voc.py` on the JAX backend, checked from the TensorFlow test session.

The training runs in programs with `KERAS_BACKEND=jax` and two host CPU
devices (see `jax_recipe_checks.py`): data-parallel training keeps every
variable identical on both devices and follows one-device training on the same
global batch, a run resumes from its checkpoint, and the command line refuses
what JAX cannot do before writing anything.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ema_keras.data import write_demo_dataset
from tests.backends.backend_testing import REPO_ROOT, backend_environment, run_checks_program
from tests.backends.test_jax import XLA_FLAGS
from tests.tf_log_level import TESTS_TF_LOG_LEVEL

pytest.importorskip(
    "jax", reason="JAX is not installed (pip install 'jax[cpu]'); JAX checks skipped"
)

TRAIN_SCRIPT = os.path.join(REPO_ROOT, "recipes", "train_voc.py")


def _jax_environment():
    return backend_environment(
        "jax", XLA_FLAGS=XLA_FLAGS, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL
    )


@pytest.fixture(scope="module")
def recipe_checks(tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp("jax_recipe"))
    for run in ("one_device", "mirrored"):  # each in its own process, as a user runs them
        run_checks_program(
            "tests.backends.jax_recipe_checks", work_dir, _jax_environment(), 600, (run,)
        )
    with open(os.path.join(work_dir, "checks.json")) as file:
        return work_dir, json.load(file)


@pytest.mark.slow
def test_data_parallel_keeps_every_variable_identical_on_both_devices(recipe_checks):
    _, checks = recipe_checks
    assert checks["step"] == 2
    assert checks["shards_per_variable"] == [2]  # every variable lives on both devices
    assert checks["variables_differing_between_devices"] == []


@pytest.mark.slow
def test_data_parallel_follows_one_device_on_the_same_global_batch(recipe_checks):
    """Same input (one tf.data pipeline, global batches), same dropout masks.

    JAX's partitionable random numbers do not depend on how an array is split,
    the BatchNorm statistics and the EMA bases update see the global batch and
    the loss is the global batch's mean in both runs. What remains is float32
    summation order (sums over the batch are added per device, then across):
    4.3e-6 relative at most after two steps on an AVX2 AMD EPYC, where 1e-4,
    the bound of the TensorFlow mirrored test, leaves a margin of 20. One CI
    machine (its CPU unrecorded) once put a single variable at 3.6e-3,
    ema_unit/output_norm/beta, whose values are about 2.6e-3 after two steps
    (1e-5 absolute; only the worst was reported). So: 99% of the variables
    within 1e-4 and none beyond 1e-2. Statistics taken over one device's half
    of the batch would change every variable after the first BatchNorm, far
    more than 1% of them.

    The two runs are separate processes: once, with both in one process, a CI
    run found the second (one-device) run far from the first (113 of 116
    variables beyond 1e-4, the mirrored run's mIoU bit-equal to every other
    run's); six runs here, under load, never did. The start digests now say
    whether such a difference was there before the first step.
    """
    _, checks = recipe_checks
    assert checks["paths_match"]
    # Both runs start from the same variables: what differs, training made.
    assert checks["start_digests_equal"]
    differences = checks["relative_difference_to_one_device"]
    assert len(differences) > 100
    assert any(path.endswith("bases") for path in differences)  # the EMA bases are compared
    beyond = {path: value for path, value in differences.items() if value > 1e-4}
    assert len(beyond) <= 0.01 * len(differences), beyond
    worst = max(differences, key=differences.get)
    assert differences[worst] <= 1e-2, (worst, differences[worst])
    # The mirrored run validates 5 images as 3 batches of 2 (one blank, ignored).
    assert abs(checks["val_mean_iou"] - checks["one_device_val_mean_iou"]) <= 1e-4


@pytest.mark.slow
def test_a_stopped_data_parallel_run_resumes_from_its_checkpoint(recipe_checks):
    work_dir, checks = recipe_checks
    assert checks["resumed_from_step"] == 1 and checks["resumed_to_step"] == 2
    assert checks["restored_bases_equal_saved"]
    for name in ("best.keras", "last.keras", "logs", "training_curve.png", "summary.json"):
        assert name in checks["resumed_outputs"]
    assert os.listdir(os.path.join(work_dir, "mirrored", "logs"))  # TensorBoard wrote


def test_what_jax_cannot_do_is_refused_in_one_line_before_writing(tmp_path):
    model_dir = str(tmp_path / "run")
    result = subprocess.run(
        [sys.executable, TRAIN_SCRIPT, "--recipe=demo", "--strategy=multi_worker",
         f"--model_dir={model_dir}"],
        env=_jax_environment(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("train_voc.py:")]
    assert len(lines) == 1 and "--strategy multi_worker needs the TensorFlow backend" in lines[0]
    assert not os.path.exists(model_dir)


@pytest.mark.slow
def test_a_killed_jax_run_resumes_from_its_checkpoint(tmp_path):
    data_dir = write_demo_dataset(
        str(tmp_path / "voc"), num_train=16, num_val=4, image_size=(64, 80), seed=3
    )
    model_dir = str(tmp_path / "run")
    index = os.path.join(model_dir, "checkpoints", "checkpoint.json")
    command = [
        sys.executable, TRAIN_SCRIPT, "--recipe=demo", f"--data_dir={data_dir}",
        f"--model_dir={model_dir}", "--strategy=mirrored", "--crop_size=64",
        "--global_batch_size=4", "--steps=30", "--steps_per_checkpoint=5", "--warmup_steps=0",
        "--novalidate", "--verbose=2",
    ]

    def checkpointed_step():
        try:
            with open(index) as file:
                return int(json.load(file)["checkpoints"][-1][len("ckpt-"):-len(".npz")])
        except (OSError, ValueError):
            return 0

    first = subprocess.Popen(command, env=_jax_environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while checkpointed_step() < 10 and time.time() < deadline:
        assert first.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = checkpointed_step()
    assert 10 <= killed_at < 30

    second = subprocess.run(command, env=_jax_environment(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    output = second.stdout + second.stderr
    assert int(re.search(r"Resuming from step (\d+)", output).group(1)) >= killed_at
    assert "Trained to step 30" in output
