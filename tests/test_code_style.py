"""The code's form, as setup.cfg configures it: lines within flake8's limit, imports sorted.

Both tools run on every Python file of the library, programs, benchmarks and
tests (isort with the black profile of setup.cfg).
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ["ema_keras", "recipes", "export", "bench", "tests"]


def run_tool(*args):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_lines_within_the_configured_limit():
    pytest.importorskip("flake8")
    result = run_tool("flake8", "--select", "E501", *FOLDERS)
    assert result.returncode == 0 and not result.stdout, result.stdout[-4000:] + result.stderr


def test_imports_sorted():
    pytest.importorskip("isort")
    result = run_tool("isort", "--check-only", "--quiet", *FOLDERS)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
