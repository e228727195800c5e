"""One `.keras` loader: every bad file is named and called what it is, through every caller."""

import json
import os
import zipfile

import pytest

from ema_keras import export, weights
from ema_keras.model_files import InvalidModelFileError, load_keras_model, read_keras_config
from ema_keras.models import EMANetImageSegmenter

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model_files") / "tiny.keras"
    EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=NUM_CLASSES).save(path)
    return str(path)


def write_bad_file(kind, model_path, folder):
    """A file that is not a loadable `.keras` of the given kind; returns its path."""
    path = os.path.join(folder, f"{kind}.keras")
    with open(model_path, "rb") as handle:
        good = handle.read()
    if kind == "truncated":
        with open(path, "wb") as handle:
            handle.write(good[: len(good) // 2])
    elif kind == "empty":
        open(path, "wb").close()
    elif kind == "text":
        with open(path, "w") as handle:
            handle.write("model: emanet\nweights: somewhere else\n")
    elif kind in ("no_config", "bad_json", "no_weights", "foreign_class"):
        with zipfile.ZipFile(model_path) as source:
            config = json.loads(source.read("config.json"))
            members = {name: source.read(name) for name in source.namelist()}
        if kind == "no_config":
            del members["config.json"]
        elif kind == "bad_json":
            members["config.json"] = b"{not json"
        elif kind == "no_weights":
            del members["model.weights.h5"]
        else:
            config.update(class_name="NoSuchModel", module="nowhere", registered_name="x>Nope")
            members["config.json"] = json.dumps(config).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    elif kind != "missing":
        raise ValueError(kind)
    return path


BAD_KINDS = ("truncated", "empty", "text", "no_config", "bad_json", "no_weights", "foreign_class")
# Every loader of a whole `.keras` model in the package.
LOADERS = {
    "load_keras_model": load_keras_model,
    "export.load_model": export.load_model,
    "load_model_weights": lambda path: weights.load_model_weights(
        EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=NUM_CLASSES), path
    ),
    "load_backbone_weights": lambda path: weights.load_backbone_weights(
        EMANetImageSegmenter.from_preset(
            "emanet_tiny_demo", num_classes=NUM_CLASSES
        ).image_encoder,
        path,
    ),
}


# load_model_weights reads the class first, and rightly says "holds a NoSuchModel, not an EMANet".
CASES = [
    (loader, kind)
    for loader in LOADERS
    for kind in BAD_KINDS
    if (loader, kind) != ("load_model_weights", "foreign_class")
]


@pytest.mark.parametrize("loader, kind", CASES)
def test_every_loader_calls_a_bad_file_not_a_valid_keras_file(loader, kind, model_path, tmp_path):
    path = write_bad_file(kind, model_path, str(tmp_path))
    with pytest.raises(InvalidModelFileError) as raised:
        LOADERS[loader](path)
    message = str(raised.value)
    assert message.startswith(f"{path} is not a valid .keras file: ")
    assert "\n" not in message and raised.value.path == path


@pytest.mark.parametrize("loader", LOADERS)
def test_every_loader_names_a_missing_file(loader, tmp_path):
    path = str(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match=f"^{path} does not exist"):
        LOADERS[loader](path)


def test_the_config_is_read_and_the_model_loaded_uncompiled(model_path):
    assert read_keras_config(model_path)["class_name"] == "EMANetImageSegmenter"
    model = load_keras_model(model_path)
    assert isinstance(model, EMANetImageSegmenter) and model.num_classes == NUM_CLASSES
    assert not model.compiled


def test_a_folder_or_another_suffix_is_refused_by_name(model_path, tmp_path):
    renamed = tmp_path / "tiny.h5"
    renamed.write_bytes(open(model_path, "rb").read())
    with pytest.raises(InvalidModelFileError, match="tiny.h5 is not a valid .keras file: .*end in"):
        load_keras_model(renamed)
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(InvalidModelFileError, match="folder.keras is not a valid .keras file"):
        read_keras_config(tmp_path / "folder.keras")
