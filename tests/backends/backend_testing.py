"""What the backend tests share: programs run on another Keras backend, and how outputs compare.

Keras picks its backend once per process, so the TensorFlow test session runs
the JAX and PyTorch sides as programs (`*_checks.py`, `recipes/train_voc.py`)
in an environment that names the backend and makes this repository importable.
"""

import os
import subprocess
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def backend_environment(backend, **variables):
    """This process' environment with KERAS_BACKEND=`backend`, the repository importable,
    and the other `variables` (XLA_FLAGS, JAX_PLATFORMS, ...)."""
    pythonpath = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=pythonpath, **variables)


def run_checks_program(module, work_dir, env, timeout=600, arguments=()):
    """`python -m <module> <work_dir> <arguments>` from the repository in `env`; returns its output.

    Fails the test with the program's output when it exits non-zero.
    """
    result = subprocess.run(
        [sys.executable, "-m", module, work_dir, *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{module} failed:\n{result.stdout}\n{result.stderr[-6000:]}"
    return result.stdout


def relative_error(actual, expected):
    """Largest absolute difference over the largest magnitude of `expected`."""
    return np.abs(actual - expected).max() / np.abs(expected).max()
