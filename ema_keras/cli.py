"""The start-up every ema-keras program shares: absl flags, quiet logs, one-line errors.

A program (`recipes/*.py`, `export/*.py`, `ema-keras-validate`) defines its
flags with absl (underscores), writes `main(argv)`, and ends with
`cli.run(main)`. A mistake the user can fix then ends in ONE line on stderr,
`<program>: <message>`, that names the flag or the file:

- exit 2: settings and usage (`SettingsError`, `app.UsageError`, a flag that
  does not parse or is missing);
- exit 1: data and model files (`DataError`, `FileNotFoundError`,
  `InvalidModelFileError`) and a training that diverged.

`--debug` shows the full traceback instead. Anything else is a bug and keeps
its traceback. TensorFlow's C++ start-up notices are already off by the time
a program runs (see `ema_keras.backend`); `run` also hides what TensorFlow,
LiteRT and the converter print for their own developers (see
`ema_keras.log_filter`) unless `--tf_logs`.
"""

import contextlib
import logging as python_logging
import os
import sys

from absl import app, flags

from ema_keras import log_filter
from ema_keras.data.discovery import DataNotFoundError
from ema_keras.data.errors import DataError
from ema_keras.inference.precision import PRECISIONS, PrecisionRefusedError
from ema_keras.model_files import InvalidModelFileError
from ema_keras.training.checkpointing import TrainingDiverged
from ema_keras.training.config import SettingsError

USAGE_ERROR = 2
DATA_ERROR = 1

# What each known error means for the exit status; the first match wins
# (DataError before FileNotFoundError: a missing data file is a data problem).
_EXIT_STATUS = (
    (SettingsError, USAGE_ERROR),
    (app.UsageError, USAGE_ERROR),
    (DataNotFoundError, USAGE_ERROR),  # nothing given, nothing found: say what to pass
    (flags.Error, USAGE_ERROR),
    (DataError, DATA_ERROR),
    (FileNotFoundError, DATA_ERROR),
    (InvalidModelFileError, DATA_ERROR),
    (TrainingDiverged, DATA_ERROR),
)

DEBUG = flags.DEFINE_boolean(
    "debug", False, "On an error, show the full traceback instead of the one-line message."
)
TF_LOGS = flags.DEFINE_boolean(
    "tf_logs",
    False,
    "Show TensorFlow's, LiteRT's and the TFLite converter's own INFO and warning lines "
    "(hidden by default; their errors always show).",
)
FLAGS = flags.FLAGS


def define_precision_flags(check_images_help):
    """--precision and --precision_check_images, as the programs that run a model take them.

    `check_images_help` says which of the program's images the check uses.
    The flags are filed under the calling program, as if it had defined them
    itself (absl's rule: `__main__` is filed as sys.argv[0]), so its --help
    lists them.
    """
    caller = sys._getframe(1).f_globals.get("__name__")
    module_name = sys.argv[0] if caller == "__main__" else caller
    flags.DEFINE_enum(
        "precision",
        "float32",
        PRECISIONS,
        "float32; bfloat16; or auto: the fastest the machine runs natively, if it agrees with "
        "float32 on >= 99.5% of the check pixels (else float32, said in the output).",
        module_name=module_name,
    )
    flags.DEFINE_integer(
        "precision_check_images", 2, check_images_help, lower_bound=1, module_name=module_name
    )


@contextlib.contextmanager
def precision_flag(precision):
    """Inside, a precision refused below the agreement threshold is a usage error naming the
    flag."""
    try:
        yield
    except PrecisionRefusedError as error:
        raise app.UsageError(f"--precision {precision}: {error}") from None


def program_name(argv=None):
    """The name errors start with: the script's file name (`train_voc.py`)."""
    argv = sys.argv if argv is None else argv
    return os.path.basename(argv[0]) if argv else "ema-keras"


def exit_status(error, usage_errors=(), data_errors=()):
    """2 or 1 for the errors a user can fix (see the module docstring), None for a bug.

    A program adds its own kinds with `usage_errors` / `data_errors`.
    """
    extra = tuple((kind, USAGE_ERROR) for kind in usage_errors)
    extra += tuple((kind, DATA_ERROR) for kind in data_errors)
    for kind, status in extra + _EXIT_STATUS:
        if isinstance(error, kind):
            return status
    return None


def _one_line(error):
    message = str(error) or type(error).__name__
    return " ".join(message.split())


def parse_flags(argv):
    """absl's parse, but a bad or missing flag is one line and exit 2 (absl: two lines, exit 1)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"{program_name(argv)}: {_one_line(error)}", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def call_main(main, argv, program=None, *, usage_errors=(), data_errors=()):
    """Runs `main(argv)` (flags already parsed); returns its exit status.

    A known error becomes one line on stderr and its status (unless --debug).
    """
    program = program or program_name(argv)
    python_logging.getLogger("tensorflow").setLevel(python_logging.WARNING)
    try:
        return main(argv) or 0
    except Exception as error:  # noqa: BLE001 - sorted below, bugs re-raised
        status = exit_status(error, usage_errors, data_errors)
        if status is None or DEBUG.value:
            raise
        print(f"{program}: {_one_line(error)}", file=sys.stderr)
        return status


def execute(main, argv, **errors):
    """Parses `argv` into absl's FLAGS and runs `main` as `run` would; returns the exit status.

    For tests and for calling a program from Python: no `sys.exit`, no second
    process. Flags are reset to their defaults first.
    """
    FLAGS.unparse_flags()
    try:
        remaining = FLAGS(argv)
    except flags.Error as error:
        print(f"{program_name(argv)}: {_one_line(error)}", file=sys.stderr)
        return USAGE_ERROR
    return call_main(main, remaining, **errors)


def run(main, **errors):
    """The program's entry point: `app.run(main)` with the start-up above.

    `errors`: `usage_errors` / `data_errors`, the program's own kinds of errors
    that become one line with exit 2 / 1.
    """
    # --help lists the main module's flags: --debug, and the flags of a program
    # that lives in the package (ema-keras-validate), are made its own.
    own = []
    if main.__module__ != "__main__":
        own = FLAGS.flags_by_module_dict().get(main.__module__, [])
    for flag in [FLAGS["debug"], FLAGS["tf_logs"], *own]:
        FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(lambda argv: _call_main_quietly(main, argv, **errors), flags_parser=parse_flags)


def _call_main_quietly(main, argv, **errors):
    if TF_LOGS.value:
        return call_main(main, argv, **errors)
    native = log_filter.hide_library_chatter()
    try:
        return call_main(main, argv, **errors)
    finally:
        native.stop()
