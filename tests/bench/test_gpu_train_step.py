"""bench/gpu_train_step.py and its device script, run on a CPU as the GPU machine would run them.

The GPU machine has no TensorFlow, so the smoke run hides it: a `tensorflow`
package first on PYTHONPATH that fails to import (Keras then treats TensorFlow
as absent, as there), and the benchmark itself refuses to finish if anything
imported TensorFlow.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import gpu_train_step
from ema_keras.losses import MaskedSparseCrossEntropy

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_loss_equals_masked_sparse_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 4, 21)).astype("float32")
    labels = rng.integers(0, 21, size=(3, 5, 4)).astype("int32")
    labels[rng.random(labels.shape) < 0.3] = 255
    labels[1] = 255  # an image with no valid pixel
    ours = float(MaskedSparseCrossEntropy()(labels, logits))
    bench = float(gpu_train_step.masked_cross_entropy(labels, logits))
    np.testing.assert_allclose(bench, ours, rtol=1e-6)


def test_torch_architecture_reads_block_counts_only_where_needed():
    assert gpu_train_step.torch_architecture("emanet_resnet101_os8_voc") is None
    tiny = gpu_train_step.torch_architecture("emanet_tiny_demo")
    assert tiny["block_counts"] == [1, 1, 1, 1] and tiny["output_stride"] == 8


@pytest.mark.slow
def test_device_script_runs_every_configuration_on_cpu_without_tensorflow(tmp_path):
    for module in ("jax", "torch"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed; the GPU benchmark's CPU run needs it")
    hidden = tmp_path / "hide_tf" / "tensorflow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("hidden: the GPU machine has none")\n')
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "hide_tf"),
        "BENCH_SKIP_INSTALL": "1",
        "PYTHON": sys.executable,
        "OUT": str(out),
        "XLA_FLAGS": "--xla_backend_optimization_level=0",  # halves the compile time
    }
    env.pop("KERAS_BACKEND", None)  # the script sets jax
    args = ["--device", "cpu", "--preset", "emanet_tiny_demo", "--crop_size", "64",
            "--batch_size", "2", "--steps", "2"]
    script = os.path.join(REPO_ROOT, "bench", "device", "run_gpu_bench.sh")
    completed = subprocess.run(
        ["bash", script, *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = (out / "gpu_train_step.md").read_text()
    assert "- settings: preset=emanet_tiny_demo, batch=2, crop=64x64" in report
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in report.splitlines()
        if line.startswith("| ") and not line.startswith("| configuration")
    }
    assert set(rows) == set(gpu_train_step.CONFIGURATIONS)
    for name, cells in rows.items():
        seconds, median, rate = (float(cells[i]) for i in range(3))
        assert 0 < seconds <= median and rate > 0, name
        if name.startswith("jax_"):
            assert float(cells[7]) > 0 and float(cells[8]) > 0, name  # XLA temp, compile s
        else:
            assert float(cells[5]) > 0, name  # peak MiB (RSS on a CPU)
    assert "jax_mixed_bfloat16 vs jax_float32: " in report
    assert "vs torch_amp_float16 images/s: " in report
    assert (out / "gpu_train_step.log").exists()


def test_report_gives_the_issue_ratios_and_keeps_failed_configurations():
    gib = 2**30
    results = {
        "jax_float32": {"seconds": 0.4, "median_seconds": 0.5, "peak_bytes": 16 * gib,
                        "xla_temp_bytes": 12 * gib, "compile_seconds": 60.0},
        "jax_mixed_bfloat16": {"seconds": 0.1, "median_seconds": 0.1, "peak_bytes": 8 * gib,
                               "xla_temp_bytes": 6 * gib, "compile_seconds": 50.0},
        "jax_mixed_float16": {"error": "XlaRuntimeError: RESOURCE_EXHAUSTED"},
        "torch_amp_float16": {"seconds": 0.125, "median_seconds": 0.13, "peak_bytes": 10 * gib},
    }
    text = gpu_train_step.report(results, batch=8)
    assert "| jax_mixed_float16 | - |" in text and "failed: XlaRuntimeError" in text
    assert "| jax_mixed_bfloat16 | 0.100 | 0.100 | 80.0 | 4.00 | 1.25 |" in text
    assert "jax_mixed_bfloat16 vs jax_float32: 4.00x (goal >= 2.0x)" in text
    assert "jax_mixed_float16 vs jax_float32: n/a" in text
    assert "ours at its fastest (jax_mixed_bfloat16) vs torch_amp_float16 images/s: 1.25x" in text
    assert "ours at its lowest (jax_mixed_bfloat16) vs torch_amp_float16: 0.80x" in text
    assert "XLA's plan (jax_mixed_bfloat16, temp bytes / image) vs torch_amp_float16: 0.60x" in text
