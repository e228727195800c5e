"""Chooses the Keras backend before anything imports Keras, as Keras would.

The backend is the one `KERAS_BACKEND` names, TensorFlow when it is unset
(ema-keras' default, whatever `~/.keras/keras.json` says), or the one Keras
already runs on when it was imported first. The layers and models run on
every backend; the data pipeline, training, inference and export need
TensorFlow (tf.data, tf.distribute, SavedModel, LiteRT).

On TensorFlow, TensorFlow is imported here, with its start-up INFO notices
hidden, at a log level chosen first; on other backends TensorFlow is not
imported at all.

TensorFlow reads its C++ log level (TF_CPP_MIN_LOG_LEVEL) once, when it loads,
that is at `import ema_keras`, before a program has parsed any flag. So the
level is chosen here, from the environment and argv: a variable the user set
is kept; else code that imports ema_keras gets `TF_LOG_LEVEL`, and our
programs (`started_as_program`) get `PROGRAM_TF_LOG_LEVEL`, unless `--tf_logs`
is on their command line (see `ema_keras.log_filter`).
"""

import itertools
import os
import sys
from contextlib import nullcontext

from ema_keras import log_filter

if "keras" in sys.modules:
    BACKEND = sys.modules["keras"].backend.backend()
else:
    BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# TensorFlow's C++ log level where TF_CPP_MIN_LOG_LEVEL is unset. Code that imports
# ema_keras: 1, warnings and errors (a GPU warning reaches it), the INFO notices (oneDNN,
# CPU features) hidden; 0 shows them again. Our programs: 2, errors only, as the warnings
# they would print are for TensorFlow's developers ("did not fully read the dataset being
# cached", the converter's "Ignored output_format."). The one home of both levels; the
# tests' is tests/tf_log_level.py's, and bench/common.py sets the programs' for the
# benchmarks, which may load TensorFlow before ema_keras.
TF_LOG_LEVEL = "1"
PROGRAM_TF_LOG_LEVEL = "2"

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Our programs: the scripts in the checkout's recipes/, export/ and bench/ (those run as
# `python -m bench.<name>`), and the console script of pyproject.toml.
PROGRAM_DIRS = tuple(os.path.join(_CHECKOUT, name) for name in ("recipes", "export", "bench"))
CONSOLE_SCRIPTS = ("ema-keras-validate",)


def started_as_program(argv):
    """Whether `argv` (sys.argv) runs one of our programs, named by its path (`PROGRAM_DIRS`,
    `CONSOLE_SCRIPTS`): an interpreter, a notebook or the user's own script is not one."""
    if not argv or not argv[0]:
        return False
    script = os.path.realpath(argv[0])
    name = os.path.splitext(os.path.basename(script))[0]
    return os.path.dirname(script) in PROGRAM_DIRS or name in CONSOLE_SCRIPTS


def tf_logs_asked(argv):
    """Whether `argv` turns the programs' --tf_logs on, read as absl will read it (--tf_logs,
    --tf_logs=false, --notf_logs; the last one counts, `--` ends the flags)."""
    asked = False
    for arg in itertools.takewhile(lambda arg: arg != "--", argv[1:]):
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in ("tf_logs", "notf_logs"):
            asked = name == "tf_logs" and value.lower() not in ("false", "f", "0")
    return asked


def default_tf_log_level(argv):
    """The level for a process started with `argv` where TF_CPP_MIN_LOG_LEVEL is unset."""
    if started_as_program(argv) and not tf_logs_asked(argv):
        return PROGRAM_TF_LOG_LEVEL
    return TF_LOG_LEVEL


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", default_tf_log_level(getattr(sys, "argv", [])))


def onednn_enabled(environ=None):
    """Whether TF_ENABLE_ONEDNN_OPTS leaves TensorFlow's oneDNN CPU kernels to its default.

    Unset, TensorFlow turns them on for x86 CPUs with AVX-512 VNNI/BF16,
    AVX-VNNI or AMX (every CPU with native bfloat16 among them) and off
    elsewhere; 0 turns them off. TensorFlow reads the variable once, when it
    is imported, so this answers for the process as long as nothing changed it
    after the import. What a kernel computes is better asked of TensorFlow
    (`ema_keras.layers.tensorflow_ops.dilated_conv2d_has_gradient`).
    """
    value = (os.environ if environ is None else environ).get("TF_ENABLE_ONEDNN_OPTS", "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


def _import_tensorflow():
    """`import tensorflow`, dropping the start-up INFO notices the log level asks to hide.

    TensorFlow 2.21 prints its oneDNN notice (twice) from a static initializer,
    through absl's C++ log before that log reads TF_CPP_MIN_LOG_LEVEL: no level
    hides it, and no API can, as it is printed while the import itself runs.
    Nothing simpler works, so descriptor 2 is captured for the import and every
    other line written back (`log_filter.stderr_lines_hidden`); this capture
    runs in every process that imports ema_keras, a library user's too.
    """
    hide = log_filter.tf_log_level() >= 1 and "tensorflow" not in sys.modules
    with log_filter.stderr_lines_hidden(log_filter.is_library_info) if hide else nullcontext():
        import tensorflow  # noqa: F401


if BACKEND == "tensorflow":
    try:
        _import_tensorflow()
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ema_keras needs TensorFlow on the TensorFlow backend. Install it with the extra "
            "that fits the machine: pip install 'ema-keras[cpu]' (CPU-only) or "
            "'ema-keras[gpu]' (CUDA); or choose another Keras backend (KERAS_BACKEND=jax) "
            "for the layers and models."
        ) from error
