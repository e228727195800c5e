"""Reading `.keras` model files: the one loader behind every CLI and library call.

A `.keras` file is a zip archive that `keras.Model.save` writes, holding
`config.json` (the architecture) and `model.weights.h5`. Keras itself reports a
truncated or foreign file as "File not found", a bad zip CRC or an h5py error;
`load_keras_model` checks the archive first and turns whatever Keras raises
while loading into one message that names the file.
"""

import json
import os
import zipfile
import zlib

import keras

CONFIG_FILE = "config.json"
# What Keras raises while deserializing a bad archive (h5py raises OSError, an
# unregistered class TypeError, a torn member zipfile.BadZipFile or EOFError).
_LOAD_ERRORS = (
    ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile, zlib.error
)


class InvalidModelFileError(ValueError):
    """A file that is not a loadable `.keras` model; `.path` names it."""

    def __init__(self, path, reason):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path} is not a valid .keras file: {reason}")


def read_keras_config(path):
    """The model config (`config.json`) of a `.keras` file, without loading any weights.

    Raises:
        FileNotFoundError: `path` does not exist.
        InvalidModelFileError: it is not a `.keras` zip archive with a config.
    """
    path = _check_path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            has_config = CONFIG_FILE in archive.namelist()
            config = archive.read(CONFIG_FILE) if has_config else None
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise InvalidModelFileError(
            path, f"not a readable zip archive ({error}): truncated, or not from keras.Model.save"
        ) from error
    if config is None:
        raise InvalidModelFileError(
            path, f"the archive has no {CONFIG_FILE} (it was not written by keras.Model.save)"
        )
    try:
        return json.loads(config)
    except ValueError as error:  # not UTF-8, or not JSON
        raise InvalidModelFileError(path, f"its {CONFIG_FILE} is not JSON ({error})") from error


def load_keras_model(path, *, compile=False):
    """The model in a `.keras` file; `ema_keras` classes are registered, safe mode is on.

    Args:
        path: a file written by `keras.Model.save` (training's best/last.keras,
            `convert_official_checkpoint`, ...).
        compile: also restore the optimizer and loss (only to resume training).

    Raises:
        FileNotFoundError: `path` does not exist.
        InvalidModelFileError: anything else that stops Keras loading it.
    """
    read_keras_config(path)  # a missing, foreign or truncated file, said plainly
    path = os.fspath(path)
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except _LOAD_ERRORS as error:
        first_line = str(error).strip().split("\n")[0][:300]
        raise InvalidModelFileError(
            path, f"Keras cannot load it ({type(error).__name__}: {first_line})"
        ) from error


def _check_path(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist (expected a .keras model file)")
    if os.path.isdir(path):
        raise InvalidModelFileError(
            path, "it is a folder (expected the file keras.Model.save writes)"
        )
    if os.path.getsize(path) == 0:
        raise InvalidModelFileError(path, "the file is empty")
    if not path.endswith(".keras"):
        raise InvalidModelFileError(
            path, "the name must end in .keras (the format keras.Model.save writes)"
        )
    return path
