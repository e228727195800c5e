"""Preset folders: keras-hub's layout on disk, read from a folder, Hugging Face or Kaggle.

    my_preset/
      config.json        the model, Keras-serialised (compile and build configs left out)
      model.weights.h5   its weights (or model.weights.json + model_NNNNN.weights.h5 shards)
      metadata.json      keras_version, ema_keras_version, parameter_count, date_saved,
                         model_class, num_classes, class_names, palette

`save_preset` writes one, `load_preset` builds the model back
(`preset_upload.upload_preset` shares one). A preset location is a local
folder, `hf://org/name` (needs `huggingface_hub`) or
`kaggle://owner/model/keras/variant[/version]` (needs `kagglehub`):
`pip install 'ema-keras[hub]'`.

Loading a preset from anywhere is as safe as loading a `.keras` file: the
config must name an EMANet segmenter registered by this package, and it is
deserialised in Keras' safe mode, so no code it carries runs (a `Lambda`
layer anywhere in it is refused); weights are arrays in HDF5 files.
"""

import datetime
import json
import os
import shutil
import tempfile

import keras

from ema_keras.models.functional_model import FunctionalModel, merge_overrides
from ema_keras.version import __version__
from ema_keras.weights.loading import copy_fine_tuning_weights

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
SHARDED_WEIGHTS_FILE = "model.weights.json"  # Keras' index of weight shards
METADATA_FILE = "metadata.json"
HUB_SCHEMES = ("hf", "kaggle")
HUB_EXTRA = "pip install 'ema-keras[hub]'"
_NOT_SAVED = ("compile_config", "build_config")  # a preset is an architecture and weights


def is_preset_location(preset):
    """True for `hf://...`, `kaggle://...` or an existing local folder."""
    if not isinstance(preset, (str, os.PathLike)):
        return False
    preset = os.fspath(preset)
    return preset_scheme(preset) in HUB_SCHEMES or os.path.isdir(preset)


def preset_scheme(preset):
    return preset.split("://", 1)[0].lower() if "://" in preset else None


def preset_file(preset, filename):
    """A local path to `filename` of the preset, downloaded (and cached) from a hub if needed.

    Raises:
        FileNotFoundError: the preset has no such file.
        ImportError: the hub's client is not installed (one line naming the extra).
    """
    preset = os.fspath(preset)
    scheme = preset_scheme(preset)
    if scheme == "hf":
        return _huggingface_file(preset, filename)
    if scheme == "kaggle":
        return _kaggle_file(preset, filename)
    path = os.path.join(preset, filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{preset}: the preset has no {filename}.")
    return path


def _huggingface_file(preset, filename):
    try:
        import huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError
    except ImportError as error:
        message = f"{preset}: Hugging Face presets need huggingface_hub: {HUB_EXTRA}."
        raise ImportError(message) from error
    repo_id = preset[len("hf://") :]
    try:
        return huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename)
    except EntryNotFoundError as error:
        raise FileNotFoundError(f"{preset}: the preset has no {filename}.") from error


def _kaggle_file(preset, filename):
    try:
        import kagglehub
    except ImportError as error:
        raise ImportError(f"{preset}: Kaggle presets need kagglehub: {HUB_EXTRA}.") from error
    handle = preset[len("kaggle://") :]
    if len(handle.split("/")) not in (4, 5):
        raise ValueError(
            f"{preset}: a Kaggle preset is kaggle://<owner>/<model>/keras/<variant>[/<version>]."
        )
    # The whole bundle, not the one file: kagglehub caches it once, and a file the
    # preset lacks (sharded weights, say) is then a local miss, not a failed request.
    path = os.path.join(kagglehub.model_download(handle), filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{preset}: the preset has no {filename}.")
    return path


def read_json(preset, filename):
    path = preset_file(preset, filename)
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{preset}: {filename} is not readable JSON ({error}).") from error


def model_class_of(config, base_class, preset):
    """The registered EMANet class `config` names, refused unless a subclass of `base_class`."""
    name = config.get("registered_name") if isinstance(config, dict) else None
    model_class = keras.saving.get_registered_object(name) if isinstance(name, str) else None
    if not (isinstance(model_class, type) and issubclass(model_class, base_class)):
        raise ValueError(
            f"{preset}: {CONFIG_FILE} holds {name or 'no registered class'}, not "
            f"{base_class.__name__ if base_class.architecture else 'an EMANet segmenter'}: "
            "only presets written by save_to_preset load."
        )
    return model_class


def load_preset(base_class, preset, *, load_weights=None, overrides=None):
    """The model of a preset folder or hub preset (see `EMANetImageSegmenter.from_preset`)."""
    preset = os.fspath(preset)
    config = read_json(preset, CONFIG_FILE)
    model_class = model_class_of(config, base_class, preset)
    overrides = dict(overrides or {})
    weights = None if load_weights is False else _weights_path(preset, required=load_weights)
    # Every build in safe mode: nothing in the config may carry code (Lambda layers, lambdas).
    if not overrides:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        if weights is not None:
            model.load_weights(weights)
        return model
    # Checked and merged first: a wrong keyword is refused before anything is built.
    model = keras.saving.deserialize_keras_object(
        _with_overrides(config, model_class, overrides), safe_mode=True
    )
    if weights is not None:
        # By layer name, from the preset as saved: another class count or output stride fits.
        saved = keras.saving.deserialize_keras_object(config, safe_mode=True)
        saved.load_weights(weights)
        copy_fine_tuning_weights(model, saved, source_name=preset)
    return model


def _weights_path(preset, *, required):
    """The preset's weights file (or shard index, its shards fetched beside it), or None."""
    try:
        return preset_file(preset, WEIGHTS_FILE)
    except FileNotFoundError:
        pass
    try:
        index = preset_file(preset, SHARDED_WEIGHTS_FILE)
    except FileNotFoundError:
        if required:
            raise FileNotFoundError(
                f"{preset}: the preset has no weights ({WEIGHTS_FILE}): use load_weights=False."
            ) from None
        return None
    with open(index, encoding="utf-8") as file:
        shards = sorted(set(json.load(file).get("weight_map", {}).values()))
    for shard in shards:  # beside the index, where Keras looks for them
        preset_file(preset, shard)
    return index


def _with_overrides(config, model_class, overrides):
    """The serialised model config with `overrides` merged in, each where it belongs.

    The levels are the model's and those of the models it holds (an
    `EMANetImageSegmenter`'s backbone and the backbone's image encoder; a
    0.1 `EMANet`'s encoder), placed as `merge_overrides` places them.
    """
    config = json.loads(json.dumps(config))  # a copy
    levels, classes = [], []
    level, level_class = config, model_class
    while level is not None:
        levels.append(level["config"])
        classes.append(level_class)
        level, level_class = _held_model(level["config"])
    shared = sorted({name for cls in classes for name in getattr(cls, "shared_arguments", ())})
    merge_overrides(levels, classes, shared, overrides, f"{model_class.__name__}.from_preset")
    return config


def _held_model(arguments):
    """The serialised model (and its registered class) among `arguments`, or (None, None)."""
    for key in ("backbone", "image_encoder"):
        value = arguments.get(key)
        if isinstance(value, dict) and "config" in value:
            held_class = keras.saving.get_registered_object(value.get("registered_name", ""))
            if isinstance(held_class, type) and issubclass(held_class, FunctionalModel):
                return value, held_class
    return None, None


def save_preset(model, preset_dir, *, max_shard_size=None):
    """Writes `model` as a preset folder (see the module docstring); atomic, never over files."""
    preset_dir = os.path.abspath(os.fspath(preset_dir))
    if os.path.exists(preset_dir) and (not os.path.isdir(preset_dir) or os.listdir(preset_dir)):
        raise FileExistsError(f"{preset_dir} exists and is not an empty folder: choose a new one.")
    parent = os.path.dirname(preset_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(preset_dir)}.", dir=parent)
    try:
        config = keras.saving.serialize_keras_object(model)
        _drop_keys(config, _NOT_SAVED)
        with open(os.path.join(staging, CONFIG_FILE), "w", encoding="utf-8") as file:
            json.dump(config, file, indent=2)
        if max_shard_size is None:
            model.save_weights(os.path.join(staging, WEIGHTS_FILE))
        else:
            model.save_weights(
                os.path.join(staging, SHARDED_WEIGHTS_FILE), max_shard_size=max_shard_size
            )
        with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as file:
            json.dump(_metadata(model), file, indent=2)
        if os.path.isdir(preset_dir):
            os.rmdir(preset_dir)  # empty, checked above
        os.replace(staging, preset_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _drop_keys(config, keys):
    if isinstance(config, dict):
        for key in keys:
            config.pop(key, None)
        for value in config.values():
            _drop_keys(value, keys)
    elif isinstance(config, list):
        for value in config:
            _drop_keys(value, keys)


def _metadata(model):
    return {
        "keras_version": keras.version(),
        "ema_keras_version": __version__,
        "parameter_count": int(model.count_params()),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        # For people and hub pages; the model reads its classes from config.json.
        "model_class": type(model).__name__,
        "num_classes": int(model.num_classes),
        "class_names": model.class_names,
        "palette": model.palette,
    }


def check_preset_folder(preset_dir, base_class):
    """Refuses a folder that `load_preset` could not build, in one line naming what is wrong."""
    preset_dir = os.fspath(preset_dir)
    if not os.path.isdir(preset_dir):
        raise FileNotFoundError(f"{preset_dir}: no such preset folder.")
    model_class_of(read_json(preset_dir, CONFIG_FILE), base_class, preset_dir)
    read_json(preset_dir, METADATA_FILE)
    if not any(
        os.path.isfile(os.path.join(preset_dir, name))
        for name in (WEIGHTS_FILE, SHARDED_WEIGHTS_FILE)
    ):
        raise FileNotFoundError(f"{preset_dir}: the preset has no {WEIGHTS_FILE}.")
