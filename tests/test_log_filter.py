"""TensorFlow/LiteRT/converter chatter is hidden from our programs' output unless --tf_logs."""

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from ema_keras.log_filter import LibraryInfoFilter, is_library_chatter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lines seen in a demo run and an export (TF 2.21, LiteRT), verbatim.
CHATTER = [
    "W0000 00:00:1795733338.774038   17095 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
    "output_format.",
    "W0000 00:00:1795733281.189042   16239 cache_dataset_ops.cc:912] The calling iterator did not "
    "fully read the dataset being cached.",
    "W0000 00:00:1795733374.825150   17095 flatbuffer_export.cc:3851] Skipping runtime version "
    "metadata in the model.",
    "I0000 00:00:1795733540.410785   20618 port.cc:153] oneDNN custom operations are on.",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, "
    "output_inference_type: INT8",
]
KEPT = [
    "E0000 00:00:1795733338.774038   17095 some_kernel.cc:12] Out of memory.",
    "I1126 22:47:58.865702 140491305790336 first_step.py:25] First training step done 11.7 s",
    "train_voc.py: --strategy: 'mirored' is not one of one_device, mirrored",
    "Warm-up: 20 steps",
]


@pytest.mark.parametrize("line", CHATTER)
def test_library_chatter_is_recognised(line):
    assert is_library_chatter(line)


@pytest.mark.parametrize("line", KEPT)
def test_errors_and_our_own_lines_are_not_chatter(line):
    assert not is_library_chatter(line)


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


PROGRAM = textwrap.dedent(
    """
    import sys
    from absl import logging
    from ema_keras import cli
    import tensorflow as tf

    def main(argv):
        iterator = iter(tf.data.Dataset.range(10).cache())  # C++ warning: cache discarded
        next(iterator)
        del iterator
        tf.train.Checkpoint(v=tf.Variable(1.0)).write(argv[1])  # absl INFO from TF
        logging.info("our own progress line")
        print("our own stderr line", file=sys.stderr, flush=True)
        print("our own stdout line")

    if __name__ == "__main__":
        cli.run(main)
    """
)


def _run_program(tmp_path, *flags):
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    return subprocess.run(
        [sys.executable, str(program), str(tmp_path / "checkpoint"), *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        # The programs' default level (the test session's conftest raises it).
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1"),
        timeout=180,
    )


@pytest.mark.slow
def test_a_program_hides_tensorflow_chatter_unless_tf_logs(tmp_path):
    quiet = _run_program(tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "our own progress line" in quiet.stderr
    assert "our own stderr line" in quiet.stderr
    assert quiet.stdout.strip() == "our own stdout line"
    assert "cache_dataset_ops" not in quiet.stderr
    assert "Sharding callback" not in quiet.stderr

    shown = _run_program(tmp_path, "--tf_logs")
    assert shown.returncode == 0, shown.stderr
    assert "cache_dataset_ops" in shown.stderr
    assert "our own progress line" in shown.stderr
