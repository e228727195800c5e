"""The start-up every ema-keras program shares: absl flags, quiet logs, one-line errors.

A program (`recipes/*.py`, `export/*.py`, `ema-keras-validate`) defines its
flags with absl (underscores), writes `main(argv)`, and ends with
`cli.run(main)`. A mistake the user can fix then ends in ONE line on stderr,
`<program>: <message>`, that names the flag or the file:

- exit 2: settings and usage (`SettingsError`, `app.UsageError`, a flag that
  does not parse or is missing), among them data that no flag names and
  that is not found where it is looked for (`DataNotFoundError`: the fix is
  the flag to pass, --data_dir);
- exit 1: data and model files (`DataError`, `FileNotFoundError`,
  `InvalidModelFileError`), among them a data folder the user named
  (--data_dir, $EMA_KERAS_DATA_DIR) that is missing, empty or of another
  layout, and a training that diverged.

`--debug` shows the full traceback instead. Anything else is a bug and keeps
its traceback.

What TensorFlow, LiteRT and the converter print for their own developers is
left out unless `--tf_logs` (see `ema_keras.log_filter`). Most of it is gone
before `run` starts: `import ema_keras` (a program's first import) has already
set TensorFlow's C++ log level to errors only, reading `--tf_logs` from argv
itself, since TensorFlow reads the level only when it loads
(`ema_keras.backend`); the export hides the converter's and LiteRT's fprintf
lines around the calls that print them. `run` adds the Python side, once:
absl's logger drops TensorFlow's and Keras' INFO records (our own stay).
(`call_main` keeps TensorFlow's Python logger at WARNING, `--tf_logs` or not.)
"""

import contextlib
import dataclasses
import logging as python_logging
import os
import sys

from absl import app, flags

from ema_keras import log_filter
from ema_keras.data.discovery import DataNotFoundError
from ema_keras.data.errors import DataError
from ema_keras.inference import distributed_evaluation
from ema_keras.inference.precision import INFERENCE_PRECISIONS, PrecisionRefusedError
from ema_keras.model_files import InvalidModelFileError
from ema_keras.training import backends
from ema_keras.training import strategy as strategies
from ema_keras.training.checkpointing import TrainingDiverged
from ema_keras.training.config import SettingsError, TrainConfig

USAGE_ERROR = 2
DATA_ERROR = 1

# What each known error means for the exit status; the first match wins
# (DataError before FileNotFoundError: a missing data file is a data problem).
_EXIT_STATUS = (
    (SettingsError, USAGE_ERROR),
    (app.UsageError, USAGE_ERROR),
    (DataNotFoundError, USAGE_ERROR),  # no folder named, none found: the flag to pass
    (flags.Error, USAGE_ERROR),
    (DataError, DATA_ERROR),
    (FileNotFoundError, DATA_ERROR),
    (InvalidModelFileError, DATA_ERROR),
    (TrainingDiverged, DATA_ERROR),
)

DEBUG = flags.DEFINE_boolean(
    "debug", False, "On an error, show the full traceback instead of the one-line message."
)
# Read from argv by ema_keras.backend, before TensorFlow loads; defined here so that absl
# takes it and --help lists it.
TF_LOGS = flags.DEFINE_boolean(
    "tf_logs",
    False,
    "Show TensorFlow's, LiteRT's and the TFLite converter's own INFO and warning lines "
    "(hidden by default; their errors always show).",
)
FLAGS = flags.FLAGS


PRECISION_HELP = (
    "float32; bfloat16; or auto: the fastest the machine runs natively, if it agrees with "
    "float32 on >= 99.5% of the check pixels (else float32, said in the output)."
)


def program_module(module_name):
    """The module a program's flags are filed under, from its `__name__`.

    absl's rule: `__main__` (a script run as a program) is filed as
    sys.argv[0]; --help lists the flags filed there.
    """
    return sys.argv[0] if module_name == "__main__" else module_name


def define_precision_flags(
    module_name, *, check_images_help=None, precision_help=PRECISION_HELP
):
    """--precision (an INFERENCE_PRECISIONS value, float32 by default), as every program that
    runs a model takes it; with `check_images_help`, --precision_check_images too.

    `module_name` is the calling program's `__name__`: the flags are filed
    under it (`program_module`), as if it had defined them itself, so that its
    --help lists them. `check_images_help` says which of the program's images
    the agreement check uses.
    """
    module_name = program_module(module_name)
    flags.DEFINE_enum(
        "precision", "float32", INFERENCE_PRECISIONS, precision_help, module_name=module_name
    )
    if check_images_help is not None:
        flags.DEFINE_integer(
            "precision_check_images", 2, check_images_help, lower_bound=1,
            module_name=module_name,
        )


def precision_asked():
    """Whether --precision was given (False: its default), for `inference_model(asked=...)`."""
    return FLAGS["precision"].present > 0


class ScalesParser(flags.ListParser):
    """--scales: comma-separated numbers, parsed to a tuple of floats (`1.0`, `0.5,1.0,1.5`)."""

    def parse(self, argument):
        if isinstance(argument, (list, tuple)):
            values = [str(value) for value in argument]
        else:
            values = super().parse(argument)
        try:
            return tuple(float(value) for value in values)
        except ValueError:
            raise ValueError(
                f"--scales takes numbers, e.g. 0.5,1.0,1.5; got {','.join(values)}"
            ) from None

    def flag_type(self):
        return "comma separated list of numbers"


def define_scales_flag(module_name, default, help_text):
    """--scales, the one parser of every program's scales (see `ScalesParser`); its value is a
    tuple of floats, or None for a `default` of None. Filed under `module_name` as
    `define_precision_flags` files its flags."""
    flags.DEFINE(
        ScalesParser(), "scales", default, help_text, serializer=flags.ListSerializer(","),
        module_name=program_module(module_name),
    )


def define_strategy_flag(module_name, default, help_text=None):
    """--strategy, the one definition of train_voc.py's and eval_voc.py's: a name of
    `ema_keras.training.strategy.STRATEGIES`, checked where it is used (`check_settings`,
    `evaluation_replicas`); the help is TrainConfig's unless `help_text`. Filed under
    `module_name` as `define_precision_flags` files its flags."""
    if help_text is None:
        help_text = {field.name: field for field in dataclasses.fields(TrainConfig)}[
            "strategy"
        ].metadata["help"]
    flags.DEFINE_string(
        "strategy", default, help_text, module_name=program_module(module_name)
    )


# What --strategy may be for an evaluation, per Keras backend (training's tpu is not:
# whole images of every size would compile a TPU program per size).
EVALUATION_STRATEGIES = {
    "tensorflow": ("one_device", "mirrored", "multi_worker"),
    "jax": ("one_device", "mirrored"),
    "torch": ("one_device",),
}


def evaluation_replicas(strategy_name):
    """The `ema_keras.inference.distributed_evaluation.EvaluationReplicas` that --strategy names
    on the current Keras backend, built as training builds its strategy; a name the backend
    cannot evaluate with is a `SettingsError` (one line). Call it before TensorFlow runs an op
    (mirrored on CPUs splits the CPU into logical devices)."""
    backend = backends.BACKEND
    allowed = EVALUATION_STRATEGIES.get(backend, ("one_device",))
    if strategy_name not in allowed:
        raise SettingsError(
            f"--strategy {strategy_name!r} cannot evaluate on KERAS_BACKEND={backend}; use "
            f"{' or '.join(allowed)}."
        )
    name = f"--strategy {strategy_name}"
    if backend == "tensorflow":
        strategy = strategies.make_strategy(strategy_name)
        return distributed_evaluation.tensorflow_replicas(
            strategy, name=name, chief=strategies.is_chief(strategy)
        )
    backends._keep_tensorflow_to_the_cpu()  # tf.data reads the files, the backend computes
    if strategy_name == "mirrored":
        return distributed_evaluation.jax_replicas(name=name)
    return distributed_evaluation.one_device(name=name)


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
    if log_filter.library_chatter_hidden():  # the level ema_keras.backend chose (--tf_logs)
        log_filter.hide_python_chatter()
    app.run(lambda argv: call_main(main, argv, **errors), flags_parser=parse_flags)
