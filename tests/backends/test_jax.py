"""Layers, models and `.keras` files on the JAX backend, checked from the TensorFlow test session.

Keras picks its backend once per process, so the JAX side runs as a program
(`tests/backends/jax_checks.py`) with `KERAS_BACKEND=jax` and two host CPU
devices for `keras.distribution.DataParallel`. It checks the EM layer against
the NumPy reference, the tiny preset (build, predict, one `fit` step, save),
and the bases after one data-parallel step; this module then checks that the
`.keras` files cross between the backends with the same outputs.
"""

import os

import keras
import numpy as np
import pytest

from ema_keras.models import EMANetImageSegmenter
from tests.backends.backend_testing import backend_environment, relative_error, run_checks_program

pytest.importorskip(
    "jax", reason="JAX is not installed (pip install 'jax[cpu]'); JAX checks skipped"
)

# Optimisation level 0 halves XLA's compile time, most of these checks' run time
# (every seeded initializer compiles a random-normal program per kernel shape).
XLA_FLAGS = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """Saves a TF model and inputs, runs the JAX checks on them; returns (folder, TF outputs)."""
    work_dir = str(tmp_path_factory.mktemp("jax"))
    inputs = np.random.default_rng(5).normal(size=(2, 48, 40, 3)).astype("float32")
    np.save(os.path.join(work_dir, "inputs.npy"), inputs)
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3, seed=1)
    model.save(os.path.join(work_dir, "tensorflow.keras"))
    tensorflow_outputs = model.predict(inputs, verbose=0)
    env = backend_environment("jax", XLA_FLAGS=XLA_FLAGS, JAX_PLATFORMS="cpu")
    report = run_checks_program("tests.backends.jax_checks", work_dir, env)
    return work_dir, inputs, tensorflow_outputs, report


def test_import_does_not_start_tensorflow_on_jax(jax_run):
    _, _, _, report = jax_run
    assert "import ema_keras leaves TensorFlow alone" in report, report


def test_layers_and_tiny_model_on_jax(jax_run):
    _, _, _, report = jax_run
    assert "em layer equals the NumPy reference" in report
    assert "tiny preset builds, predicts, fits one step, saves and reloads" in report


def test_data_parallel_bases_are_the_global_batch_update(jax_run):
    _, _, _, report = jax_run
    assert "DataParallel on 2 devices: bases equal the global-batch reference on both" in report


def test_file_saved_on_tensorflow_loads_on_jax(jax_run):
    work_dir, _, tensorflow_outputs, _ = jax_run
    outputs = np.load(os.path.join(work_dir, "tensorflow_outputs_on_jax.npy"))
    assert relative_error(outputs, tensorflow_outputs) <= 1e-5


def test_file_saved_on_jax_loads_on_tensorflow(jax_run):
    work_dir, inputs, _, _ = jax_run
    model = keras.models.load_model(os.path.join(work_dir, "jax.keras"))
    assert isinstance(model, EMANetImageSegmenter)
    jax_outputs = np.load(os.path.join(work_dir, "jax_outputs.npy"))
    assert relative_error(model.predict(inputs, verbose=0), jax_outputs) <= 1e-5
