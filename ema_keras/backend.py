"""Chooses the Keras backend before anything imports Keras, as Keras would.

The backend is the one `KERAS_BACKEND` names, TensorFlow when it is unset
(ema-keras' default, whatever `~/.keras/keras.json` says), or the one Keras
already runs on when it was imported first. The layers and models run on
every backend; the data pipeline, training, inference and export need
TensorFlow (tf.data, tf.distribute, SavedModel, LiteRT).

On TensorFlow, TensorFlow is imported here with its start-up INFO notices
hidden; on other backends TensorFlow is not imported at all.
"""

import os
import sys
import tempfile

if "keras" in sys.modules:
    BACKEND = sys.modules["keras"].backend.backend()
else:
    BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# TensorFlow's C++ INFO notices (oneDNN, CPU features) are noise in a program's
# output; warnings and errors stay. TF_CPP_MIN_LOG_LEVEL=0 shows them again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


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


def _is_startup_notice(line):
    """An INFO line TensorFlow's C++ prints while loading, before any log setting applies."""
    return line.startswith("I0000 ") or "before absl::InitializeLog() is called" in line


def _import_tensorflow():
    """`import tensorflow`, dropping the start-up INFO notices TF_CPP_MIN_LOG_LEVEL asks to hide.

    TensorFlow 2.21 prints its oneDNN notice (twice) through absl's C++ log
    before that log reads TF_CPP_MIN_LOG_LEVEL, so the level alone cannot
    hide it: stderr is captured during the import and everything else in it
    is written back.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("", "0") or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401

        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr: nothing to hide
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(True) if not _is_startup_notice(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


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
