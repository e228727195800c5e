"""Hides what TensorFlow, LiteRT and the TFLite converter print for their own developers.

A demo run used to print, beside our own lines, TensorFlow's C++ warnings
("the partially cached contents ... will be discarded", "GeneratorDatasetOp
will not be optimized"), the converter's "Ignored output_format." pairs, its
"fully_quantize: 0, inference_type: 6 ..." line, LiteRT's "Created TensorFlow
Lite XNNPACK delegate" and the SavedModel writer's absl INFO "Sharding callback
duration". None of them asks the user to do anything. Programs hide them by
default (`ema_keras.cli`, flag `--tf_logs` shows them); errors always pass.

The C++ lines bypass Python: they are written straight to file descriptor 2,
and TF_CPP_MIN_LOG_LEVEL only counts when it is set before TensorFlow is
imported (which happens at `import ema_keras`, before any flag is parsed). So
`NativeStderrFilter` puts a pipe behind descriptor 2 and forwards every line
except those `is_library_chatter` recognises.
"""

import logging
import os
import re
import sys
import threading

# C++ log lines in absl's format, e.g.
# "W0000 00:00:1795733338.774038   17095 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format."
# Only INFO (I) and WARNING (W) lines: E and F lines always reach the user.
_NATIVE_INFO_OR_WARNING = re.compile(
    r"^[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-]+\.(cc|h|cpp):\d+\] "
)

# Lines LiteRT and the converter print with plain fprintf.
_PLAIN_CHATTER = (
    "INFO: Created TensorFlow Lite XNNPACK delegate",
    "INFO: Initialized TensorFlow Lite runtime",
    "fully_quantize: ",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
)

# A partial line starting otherwise cannot become chatter: it is forwarded at once.
_MAY_START_CHATTER = (b"I", b"W", b"f")

# Python packages whose INFO records (absl or logging) are for their own developers.
_LIBRARY_DIRS = tuple(
    os.sep + name + os.sep for name in ("tensorflow", "keras", "tf_keras", "tensorflow_datasets")
)


def is_library_chatter(line):
    """True for a stderr line that TF/LiteRT/the converter print and no user needs."""
    return bool(_NATIVE_INFO_OR_WARNING.match(line)) or line.startswith(_PLAIN_CHATTER)


class LibraryInfoFilter(logging.Filter):
    """Drops INFO (and DEBUG) records logged from inside TensorFlow or Keras; keeps the rest."""

    def filter(self, record):
        if record.levelno >= logging.WARNING:
            return True
        return not any(part in record.pathname for part in _LIBRARY_DIRS)


class NativeStderrFilter:
    """Filters file descriptor 2 through `is_library_chatter` until `stop()`.

    Python's own stderr goes through the same pipe, so the order of lines is
    kept. A partial line (no newline yet) is forwarded as soon as the writer
    pauses, so prompts and progress bars are not held back.
    """

    def __init__(self):
        self._saved_fd = None
        self._thread = None

    def start(self):
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        self._saved_fd = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._thread = threading.Thread(target=self._forward, args=(read_fd,), daemon=True)
        self._thread.start()
        return self

    def _forward(self, read_fd):
        pending = b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = [line + b"\n" for line in lines if not self._hidden(line)]
                if pending and not pending.startswith(_MAY_START_CHATTER):
                    kept.append(pending)  # a prompt or a progress bar: show it now
                    pending = b""
                if kept:
                    os.write(self._saved_fd, b"".join(kept))
        if pending and not self._hidden(pending):
            os.write(self._saved_fd, pending)

    @staticmethod
    def _hidden(line):
        return is_library_chatter(line.decode("utf-8", errors="replace"))

    def stop(self):
        """Puts the real stderr back and forwards what is still in the pipe."""
        if self._saved_fd is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)  # closes the pipe's last writer: the reader sees EOF
        self._thread.join(timeout=5)
        os.close(self._saved_fd)
        self._saved_fd = None


def hide_library_chatter():
    """Installs both filters; returns the native one (call `.stop()` when the program ends).

    (TensorFlow's own Python logger is kept at WARNING by `cli.call_main`, for
    every program, `--tf_logs` or not.)
    """
    logging.getLogger("absl").addFilter(LibraryInfoFilter())
    return NativeStderrFilter().start()
