"""Layers, models and `.keras` files on the PyTorch backend, checked from the TF test session.

Keras picks its backend once per process, so the torch side runs as a program
(`tests/backends/torch_checks.py`) with `KERAS_BACKEND=torch`: the EM layer
against the NumPy reference, the tiny preset's `fit` (the loss falls, the
bases move), its save and reload; this module then checks that the `.keras`
files cross between TensorFlow and torch with the same outputs.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from ema_keras.models import EMANetImageSegmenter
from tests.backends.backend_testing import (
    REPO_ROOT,
    backend_environment,
    relative_error,
    run_checks_program,
)
from tests.tf_log_level import TESTS_TF_LOG_LEVEL

pytest.importorskip("torch", reason="PyTorch is not installed; torch checks skipped")


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    """Saves a TF model and inputs, runs the torch checks on them; returns what they wrote."""
    work_dir = str(tmp_path_factory.mktemp("torch"))
    inputs = np.random.default_rng(5).normal(size=(2, 48, 40, 3)).astype("float32")
    np.save(os.path.join(work_dir, "inputs.npy"), inputs)
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3, seed=1)
    model.save(os.path.join(work_dir, "tensorflow.keras"))
    tensorflow_outputs = model.predict(inputs, verbose=0)
    environment = backend_environment("torch")
    report = run_checks_program("tests.backends.torch_checks", work_dir, environment)
    return work_dir, inputs, tensorflow_outputs, report


def test_import_does_not_start_tensorflow_on_torch(torch_run):
    assert "import ema_keras leaves TensorFlow alone" in torch_run[3], torch_run[3]


def test_em_layer_equals_the_reference_on_torch(torch_run):
    assert "em layer equals the NumPy reference" in torch_run[3]


def test_tiny_preset_trains_saves_and_reloads_on_torch(torch_run):
    assert "tiny preset fits 4 steps" in torch_run[3] and "saves, reloads" in torch_run[3]


def test_file_saved_on_tensorflow_loads_on_torch(torch_run):
    work_dir, _, tensorflow_outputs, _ = torch_run
    outputs = np.load(os.path.join(work_dir, "tensorflow_outputs_on_torch.npy"))
    assert relative_error(outputs, tensorflow_outputs) <= 1e-5


def test_file_saved_on_torch_loads_on_tensorflow(torch_run):
    work_dir, inputs, _, _ = torch_run
    model = keras.models.load_model(os.path.join(work_dir, "torch.keras"))
    assert isinstance(model, EMANetImageSegmenter)
    torch_outputs = np.load(os.path.join(work_dir, "torch_outputs.npy"))
    assert relative_error(model.predict(inputs, verbose=0), torch_outputs) <= 1e-5


@pytest.mark.slow
def test_training_recipe_runs_on_torch(tmp_path):
    """`train_voc.py` on torch, one device: two steps, a checkpoint each, every output written."""
    from ema_keras.data import write_demo_dataset

    data_dir = write_demo_dataset(
        str(tmp_path / "voc"), num_train=16, num_val=5, image_size=(64, 80), seed=3
    )
    model_dir = str(tmp_path / "run")
    env = backend_environment("torch", TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "recipes", "train_voc.py"), "--recipe=demo",
         f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--strategy=one_device",
         "--crop_size=64", "--global_batch_size=4", "--steps=2", "--steps_per_checkpoint=1",
         "--warmup_steps=0", "--eval_pad_size=80", "--verbose=0"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trained to step 2" in result.stdout
    for name in ("best.keras", "last.keras", "logs", "training_curve.png", "summary.json"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == [
        "checkpoint.json", "ckpt-1.npz", "ckpt-2.npz"
    ]
    reloaded = keras.models.load_model(os.path.join(model_dir, "last.keras"))
    assert isinstance(reloaded, EMANetImageSegmenter)
