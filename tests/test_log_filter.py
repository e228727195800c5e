"""TensorFlow/LiteRT/converter chatter is left out of our programs' output unless --tf_logs."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from ema_keras import backend, log_filter
from ema_keras.log_filter import LibraryInfoFilter, is_library_chatter, is_library_info
from tests.cli_testing import REPO

# Lines seen in a demo run and an export (TF 2.21, LiteRT), verbatim.
NATIVE_WARNINGS = [
    "W0000 00:00:1795733338.774038   17095 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
    "output_format.",
    "W0000 00:00:1795733281.189042   16239 cache_dataset_ops.cc:912] The calling iterator did not "
    "fully read the dataset being cached.",
    "W0000 00:00:1795733374.825150   17095 flatbuffer_export.cc:3851] Skipping runtime version "
    "metadata in the model.",
]
INFO = [
    "I0000 00:00:1795733540.410785   20618 port.cc:153] oneDNN custom operations are on.",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, "
    "output_inference_type: INT8",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
]
KEPT = [
    "E0000 00:00:1795733338.774038   17095 some_kernel.cc:12] Out of memory.",
    "I1126 22:47:58.865702 140491305790336 first_step.py:25] First training step done 11.7 s",
    "train_voc.py: --strategy: 'mirored' is not one of one_device, mirrored",
    "Warm-up: 20 steps",
]


@pytest.mark.parametrize("line", NATIVE_WARNINGS + INFO)
def test_library_chatter_is_recognised(line):
    assert is_library_chatter(line)


@pytest.mark.parametrize("line", KEPT)
def test_errors_and_our_own_lines_are_not_chatter(line):
    assert not is_library_chatter(line) and not is_library_info(line)


@pytest.mark.parametrize("line", NATIVE_WARNINGS)
def test_the_import_capture_keeps_tensorflows_warnings(line):
    assert not is_library_info(line)  # a library user at level 1 sees them


def _record(pathname, level):
    return logging.LogRecord("absl", level, pathname, 1, "message", None, None)


def test_info_from_inside_tensorflow_is_dropped_and_everything_else_kept():
    library = os.path.join(
        "site-packages", "tensorflow", "python", "checkpoint", "functional_saver.py"
    )
    ours = os.path.join(REPO, "ema_keras", "training", "first_step.py")
    keep = LibraryInfoFilter().filter
    assert not keep(_record(library, logging.INFO))
    assert keep(_record(library, logging.WARNING))
    assert keep(_record(ours, logging.INFO))


def test_the_capture_drops_chatter_written_to_the_descriptor_and_keeps_the_rest(capfd):
    lines = [INFO[1], KEPT[0], NATIVE_WARNINGS[0], INFO[2], KEPT[3]]
    script = "import sys; sys.stderr.write(sys.argv[1])"  # a C++ library's fprintf, as it were
    with log_filter.stderr_lines_hidden(is_library_chatter):
        subprocess.run([sys.executable, "-c", script, "\n".join(lines) + "\n"], check=True)
        os.write(2, b"no newline at the end")
    assert capfd.readouterr().err == f"{KEPT[0]}\n{KEPT[3]}\nno newline at the end"


def test_the_capture_writes_back_what_it_holds_when_the_call_fails(capfd):
    with pytest.raises(RuntimeError):
        with log_filter.stderr_lines_hidden(is_library_chatter):
            os.write(2, f"{INFO[1]}\n{KEPT[0]}\n".encode())
            raise RuntimeError("converter failed")
    assert capfd.readouterr().err == f"{KEPT[0]}\n"


@pytest.mark.parametrize(
    "argv",
    [[], ["--tf_logs"], ["-tf_logs"], ["--tf_logs=true"], ["--tf_logs=False"], ["--notf_logs"],
     ["--tf_logs", "--notf_logs"], ["--notf_logs", "--tf_logs=1"], ["--", "--tf_logs"],
     ["--tf_logs_more"], ["tf_logs"]],
)  # fmt: skip
def test_the_backend_reads_tf_logs_from_argv_as_absl_does(argv):
    values = flags.FlagValues()
    flags.DEFINE_boolean("tf_logs", False, "", flag_values=values)
    flags.DEFINE_boolean("tf_logs_more", False, "", flag_values=values)
    values(["program.py", *argv])
    assert backend.tf_logs_asked(["program.py", *argv]) == values.tf_logs


def test_programs_and_only_programs_get_the_programs_level(tmp_path):
    programs = [
        os.path.join(REPO, "recipes", "train_voc.py"),
        os.path.join(REPO, "export", "export_model.py"),
        os.path.join(REPO, "bench", "model_inference.py"),  # python -m bench.model_inference
        os.path.join(os.path.dirname(sys.executable), "ema-keras-validate"),
    ]
    for program in programs:
        assert backend.default_tf_log_level([program]) == backend.PROGRAM_TF_LOG_LEVEL, program
        assert backend.default_tf_log_level([program, "--tf_logs"]) == backend.TF_LOG_LEVEL
    for other in ["", "-c", str(tmp_path / "my_training.py"), os.path.join(REPO, "setup.py")]:
        assert backend.default_tf_log_level([other]) == backend.TF_LOG_LEVEL, other
    assert backend.default_tf_log_level([]) == backend.TF_LOG_LEVEL
    assert log_filter.library_chatter_hidden({"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert not log_filter.library_chatter_hidden({"TF_CPP_MIN_LOG_LEVEL": backend.TF_LOG_LEVEL})


def test_the_benchmarks_run_at_the_programs_level():
    from bench import common

    assert common.TF_LOG_LEVEL == backend.PROGRAM_TF_LOG_LEVEL


def _environment():
    environment = dict(os.environ, PYTHONPATH=REPO)
    environment.pop("TF_CPP_MIN_LOG_LEVEL")  # the test session's; a program chooses its own
    return environment


def test_code_that_imports_the_library_keeps_tensorflows_warnings():
    code = "import os, ema_keras; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_environment(), cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == backend.TF_LOG_LEVEL
    assert run.stderr == ""  # the oneDNN notice of the import, hidden all the same


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    """A tiny EMANet that was never trained (its int8 file disagrees with it) and two images."""
    from PIL import Image

    from ema_keras.models import build_preset

    folder = tmp_path_factory.mktemp("chatter")
    build_preset("emanet_tiny_demo", seed=0).save(folder / "model.keras")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"image{index}.png")
    return folder


def _export_int8(folder, *flags):
    """export_model.py, as a user runs it: the converter's and LiteRT's chatter comes up, and
    a verification held to a threshold no int8 file meets (a real error line)."""
    command = [
        sys.executable, os.path.join(REPO, "export", "export_model.py"),
        f"--model={folder / 'model.keras'}", f"--images={folder / 'image*.png'}",
        f"--output_dir={folder / 'export'}", "--formats=tflite_int8", "--image_size=40,40",
        "--int8_threshold=1.0", "--num_threads=1", *flags,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=_environment(),
                          cwd=REPO, timeout=600)


@pytest.mark.slow
def test_a_program_hides_the_chatter_shows_errors_and_tf_logs_shows_it_all(untrained_model):
    quiet = _export_int8(untrained_model)
    assert quiet.returncode == 1, quiet.stderr
    assert "Verification failed for ['tflite_int8']" in quiet.stderr
    assert "tflite_int8" in quiet.stdout  # the table
    assert [line for line in quiet.stderr.splitlines() if is_library_chatter(line)] == []

    shown = _export_int8(untrained_model, "--tf_logs")
    assert shown.returncode == 1, shown.stderr
    assert "Verification failed for ['tflite_int8']" in shown.stderr
    for chatter in ("Ignored output_format", "fully_quantize: ", "XNNPACK delegate"):
        assert chatter in shown.stderr


def _train_demo(model_dir, *flags):
    command = [
        sys.executable, os.path.join(REPO, "recipes", "train_voc.py"), "--recipe=demo",
        f"--model_dir={model_dir}", "--steps=2", "--steps_per_checkpoint=2", "--warmup_steps=0",
        "--verbose=0", *flags,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=_environment(),
                          cwd=REPO, timeout=600)


@pytest.mark.slow
def test_training_keeps_our_own_info_lines_and_hides_the_savedmodel_writers(tmp_path):
    quiet = _train_demo(tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "First training step done" in quiet.stderr  # absl INFO, ours
    assert "Sharding callback duration" not in quiet.stderr  # absl INFO, TensorFlow's
    assert [line for line in quiet.stderr.splitlines() if is_library_chatter(line)] == []

    shown = _train_demo(tmp_path / "shown", "--tf_logs")
    assert shown.returncode == 0, shown.stderr
    assert "Sharding callback duration" in shown.stderr
    assert "cache_dataset_ops" in shown.stderr
