"""`.keras` files written by release 0.1.0 (tests/data/release_0.1.0) load and predict the same.

On TensorFlow here, on JAX and PyTorch as programs, each after nothing but
`import ema_keras`: the same class, the trainer's optimizer with its step
count, the class names, and outputs within 1e-5 (relative) of what 0.1.0
computed. See `release_file_checks.py` for how the files were made.
"""

import os

import numpy as np
import pytest

from tests.backends import release_file_checks
from tests.backends.backend_testing import backend_environment, relative_error, run_checks_program

EXPECTED_CLASSES = {"emanet_aux": "EMANet", "mobile": "MobileEMANet"}


def expected_outputs(name):
    with np.load(os.path.join(release_file_checks.RELEASE_DIR, "expected.npz")) as expected:
        return {key.split("/", 1)[1]: expected[key] for key in expected if key.startswith(name)}


def check(report, work_dir, backend):
    for name, class_name in EXPECTED_CLASSES.items():
        prefix = f"{backend} read {name}:"
        (line,) = [line for line in report.splitlines() if line.startswith(prefix)]
        assert f"class={class_name}" in line, line
        if name == "emanet_aux":
            assert "optimizer=ParameterGroupSGD iterations=2" in line, line
            assert "class_names=background,disc,bar" in line, line
        with np.load(os.path.join(work_dir, f"{name}_on_{backend}.npz")) as outputs:
            expected = expected_outputs(name)
            assert sorted(outputs.files) == sorted(expected)
            for output, value in expected.items():
                assert relative_error(outputs[output], value) <= 1e-5, (name, output)


def test_release_files_load_on_tensorflow(tmp_path, capsys):
    release_file_checks.read(str(tmp_path))
    check(capsys.readouterr().out, str(tmp_path), "tensorflow")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_release_files_load_on_other_backends(tmp_path, backend):
    pytest.importorskip(backend)
    env = backend_environment(backend, JAX_PLATFORMS="cpu")
    report = run_checks_program("tests.backends.release_file_checks", str(tmp_path), env)
    check(report, str(tmp_path), backend)
