"""What TensorFlow, LiteRT and the TFLite converter print for their own developers, and how
our programs leave it out.

A demo run used to print, beside our own lines, TensorFlow's C++ warnings ("The
calling iterator did not fully read the dataset being cached", the converter's
"Ignored output_format." pairs), the converter's "fully_quantize: 0,
inference_type: 6 ..." line, LiteRT's "Created TensorFlow Lite XNNPACK delegate"
and the SavedModel writer's absl INFO "Sharding callback duration". None of them
asks the user to do anything. Programs leave them out (`--tf_logs` shows them);
errors always show. Each kind is hidden where it comes from:

- TensorFlow's C++ log, by its level: programs run at TF_CPP_MIN_LOG_LEVEL=2
  (errors only), which `ema_keras.backend` chooses from argv before TensorFlow
  loads (TensorFlow reads it then, and never again). `library_chatter_hidden`
  says whether the process runs at such a level; the two pieces below follow it.
- Lines printed with plain fprintf, which no level hides (the converter's,
  LiteRT's): `native_chatter_hidden` captures descriptor 2 into a temporary file
  around the calls that print them (in `ema_keras.export`) and writes back every
  line but the chatter.
- absl INFO records logged from inside TensorFlow or Keras: `hide_python_chatter`,
  once at a program's start (`ema_keras.cli.run`), filters them out of absl's
  logger; our own INFO lines stay.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

# C++ log lines in absl's format, e.g.
# "W0000 00:00:1795733338.774038   17095 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format."
# The first letter is the severity: I(NFO), W(ARNING), E(RROR), F(ATAL).
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-]+\.(?:cc|h|cpp):\d+\] ")

# INFO that LiteRT, the converter and absl's C++ log print with plain fprintf, at any level.
_PLAIN_INFO = (
    "INFO: Created TensorFlow Lite XNNPACK delegate",
    "INFO: Initialized TensorFlow Lite runtime",
    "fully_quantize: ",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
)

# Python packages whose INFO records (absl or logging) are for their own developers.
_LIBRARY_DIRS = tuple(
    os.sep + name + os.sep for name in ("tensorflow", "keras", "tf_keras", "tensorflow_datasets")
)


def _native_severity(line):
    match = _NATIVE_LINE.match(line)
    return match.group(1) if match else None


def is_library_info(line):
    """True for an INFO line of TensorFlow's C++ log, or one of the plain INFO lines above."""
    return _native_severity(line) == "I" or line.startswith(_PLAIN_INFO)


def is_library_chatter(line):
    """True for a stderr line that TF/LiteRT/the converter print and no user needs: their
    INFO and WARNING lines. ERROR and FATAL lines never are."""
    return is_library_info(line) or _native_severity(line) == "W"


def tf_log_level(environ=None):
    """TF_CPP_MIN_LOG_LEVEL as a number, 0 (everything) when it is unset or not a number."""
    try:
        return int((os.environ if environ is None else environ).get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def library_chatter_hidden(environ=None):
    """Whether this process hides the chatter: its TensorFlow log level hides warnings (2 or
    more; a program's, unless --tf_logs; see `ema_keras.backend`)."""
    return tf_log_level(environ) >= 2


def _duplicate_stderr():
    try:
        sys.stderr.flush()
        return os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2, or no sys.stderr
        return None


@contextlib.contextmanager
def stderr_lines_hidden(is_hidden):
    """Inside, descriptor 2 writes to a temporary file; at the end, every line written there
    goes back to descriptor 2 except those `is_hidden` recognises.

    C++ code writes to the descriptor itself, bypassing Python, so only the
    descriptor can hide its lines. Python's own stderr lines of the block are
    captured (and kept) too; all come back, in order, when the block ends, so
    this is for one call, not a program's life. A process that dies inside (a
    crash in C++) loses what was captured: `--tf_logs` runs without it.
    """
    saved = _duplicate_stderr()
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            kept = b"".join(
                line for line in captured.read().splitlines(keepends=True)
                if not is_hidden(line.decode("utf-8", errors="replace"))
            )  # fmt: skip
            while kept:
                kept = kept[os.write(2, kept):]


def native_chatter_hidden():
    """Around a call that prints chatter with plain fprintf (the TFLite conversion, LiteRT's
    first allocation): `stderr_lines_hidden(is_library_chatter)` where the chatter is hidden
    (`library_chatter_hidden`), else nothing."""
    if library_chatter_hidden():
        return stderr_lines_hidden(is_library_chatter)
    return contextlib.nullcontext()


class LibraryInfoFilter(logging.Filter):
    """Drops INFO (and DEBUG) records logged from inside TensorFlow or Keras; keeps the rest."""

    def filter(self, record):
        if record.levelno >= logging.WARNING:
            return True
        return not any(part in record.pathname for part in _LIBRARY_DIRS)


def hide_python_chatter():
    """Once, at a program's start: absl's logger drops the INFO records of TF and Keras (TF's
    SavedModel writer logs through absl, as our programs do)."""
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(kept, LibraryInfoFilter) for kept in absl_logger.filters):
        absl_logger.addFilter(LibraryInfoFilter())
