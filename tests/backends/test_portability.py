"""One `.keras` file, any backend, any runtime.

A tiny EMANet and a MobileEMANet are trained a little and saved on each of
TensorFlow, JAX and PyTorch, as a `.keras` file and as a preset folder; every
file is read on the two other backends and must hold the same weights (EMA
bases and BatchNorm statistics included) and give the same outputs (<= 1e-5
relative), and so must every preset read with `from_preset`. A model trained on
JAX then exports through TensorFlow to a SavedModel, TFLite and ONNX, each
verified against it.

TensorFlow runs here; JAX and PyTorch run `portability_checks.py` as programs
(Keras picks its backend once per process), in an order that lets every
backend read every other one's files: TF, torch, JAX, torch again, TF again.
"""

import itertools
import os

import numpy as np
import pytest

from ema_keras import export
from tests.backends import portability_checks
from tests.backends.backend_testing import backend_environment, relative_error, run_checks_program

# Three backends train and save (JAX compiles each model once): about 2-4 minutes.
pytestmark = pytest.mark.slow

pytest.importorskip("jax", reason="JAX is not installed (pip install 'jax[cpu]')")
pytest.importorskip("torch", reason="PyTorch is not installed")

BACKENDS = ("tensorflow", "jax", "torch")
# One host device and XLA's optimisation level 0: compile time is most of JAX's run time.
XLA_FLAGS = "--xla_backend_optimization_level=0"


def run_checks(backend, work_dir):
    env = backend_environment(backend, XLA_FLAGS=XLA_FLAGS, JAX_PLATFORMS="cpu")
    return run_checks_program("tests.backends.portability_checks", work_dir, env)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    """Every backend's files, and every backend's reading of the others'."""
    work_dir = str(tmp_path_factory.mktemp("portability"))
    pixels = np.random.default_rng(7).uniform(0.0, 255.0, (2, 64, 64, 3)).astype("float32")
    np.save(os.path.join(work_dir, "inputs.npy"), pixels)
    portability_checks.main(work_dir)
    report = run_checks("torch", work_dir) + run_checks("jax", work_dir)
    report += run_checks("torch", work_dir)
    portability_checks.main(work_dir)
    # Each backend checked, before saving, that training moved every EMA base and
    # BatchNorm statistic away from its initial value (here: an AssertionError above).
    for backend in ("jax", "torch"):
        for name in portability_checks.MODELS:
            assert f"{backend} wrote {name}: " in report, report
    # A compiled, trained file loads after a bare `import ema_keras`, TensorFlow untouched.
    for target, source in [("jax", "tensorflow"), ("jax", "torch"), ("torch", "jax")]:
        for name in portability_checks.MODELS:
            read = f"{target} read {source}'s {name} (ParameterGroupSGD; TensorFlow not imported)"
            assert read in report, report
    return work_dir


def load_weights(path):
    with np.load(path) as weights:
        return [weights[f"arr_{index}"] for index in range(len(weights.files))]


@pytest.mark.parametrize("name", portability_checks.MODELS)
@pytest.mark.parametrize("source,target", list(itertools.permutations(BACKENDS, 2)))
def test_file_saved_on_one_backend_loads_on_another(work_dir, source, target, name):
    stem = os.path.join(work_dir, f"{source}_{name}")
    saved = load_weights(f"{stem}_weights.npz")
    loaded = load_weights(f"{stem}_weights_on_{target}.npz")
    assert len(saved) == len(loaded) > 0
    for saved_weight, loaded_weight in zip(saved, loaded):
        np.testing.assert_array_equal(loaded_weight, saved_weight)
    outputs = np.load(f"{stem}_on_{target}.npy")
    assert outputs.shape == (2, 64, 64, portability_checks.NUM_CLASSES)
    assert relative_error(outputs, np.load(f"{stem}.npy")) <= 1e-5
    # The preset folder the source backend wrote, read by from_preset on the target.
    from_preset = np.load(f"{stem}_preset_on_{target}.npy")
    assert relative_error(from_preset, np.load(f"{stem}.npy")) <= 1e-5


def test_model_trained_on_jax_exports_through_tensorflow_and_verifies(work_dir, tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (64, 64, 3)).astype("uint8") for _ in range(2)]
    formats = ["saved_model", "tflite_fp32"] + ([] if export.onnx.missing_packages() else ["onnx"])
    reports = export.export_and_verify(
        os.path.join(work_dir, "jax_emanet.keras"),
        tmp_path,
        images=images,
        formats=formats,
        image_size=(64, 64),
        print_table=False,
    )
    assert [report.format for report in reports] == formats
    for report in reports:
        assert report.passed and report.max_abs_logit_diff < 1e-4, report
