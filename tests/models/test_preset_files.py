"""Preset folders: save_to_preset / from_preset round trips, overrides, refusals, hubs."""

import json
import os

import keras
import numpy as np
import pytest

import ema_keras  # noqa: F401  (registers the classes, as a user's import does)
from ema_keras.models import (
    EMANet,
    EMANetImageSegmenter,
    MobileEMANet,
    MobileEMANetBackbone,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny EMANet off its initialisation, its preset folder and its output on a batch."""
    model = EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo", num_classes=3, seed=5, class_names=["bg", "cat", "dog"],
        palette=[[0, 0, 0], [255, 0, 0], [0, 0, 255]],
    )  # fmt: skip
    batch = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model(batch, training=True)  # BN statistics and EMA bases off their init
    folder = tmp_path_factory.mktemp("presets") / "tiny"
    model.save_to_preset(folder)
    return model, folder, batch, model(batch).numpy()


def test_round_trip_gives_the_same_model_and_outputs(trained):
    model, folder, batch, expected = trained
    assert sorted(os.listdir(folder)) == ["config.json", "metadata.json", "model.weights.h5"]
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["keras_version"] == keras.version()
    assert metadata["parameter_count"] == model.count_params()
    assert metadata["class_names"] == ["bg", "cat", "dog"] and metadata["num_classes"] == 3
    assert "compile_config" not in (folder / "config.json").read_text()
    loaded = EMANetImageSegmenter.from_preset(str(folder))
    assert type(loaded) is EMANetImageSegmenter and loaded.class_names == ["bg", "cat", "dog"]
    np.testing.assert_array_equal(loaded(batch).numpy(), expected)
    fresh = EMANetImageSegmenter.from_preset(str(folder), load_weights=False)
    assert not np.allclose(fresh(batch).numpy(), expected)


def test_overrides_fine_tune_from_the_preset(trained):
    model, folder, _, _ = trained
    five = EMANetImageSegmenter.from_preset(str(folder), num_classes=5, output_stride=16,
                                            class_names=None, palette=None)  # fmt: skip
    assert five.num_classes == 5 and five.backbone.output_stride == 16
    pairs = [
        (five.backbone.get_layer(n), model.backbone.get_layer(n))
        for n in ("pre_ema_conv", "ema_unit")
    ]
    pairs.append((five.image_encoder.get_layer("conv5_block1_2_conv"),
                  model.image_encoder.get_layer("conv5_block1_2_conv")))  # fmt: skip
    for new, old in pairs:
        for ours, theirs in zip(new.weights, old.weights):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert five.get_layer("classifier_conv").kernel.shape[-1] == 5
    with pytest.raises(TypeError, match="'num_clases' .*did you mean 'num_classes'"):
        EMANetImageSegmenter.from_preset(str(folder), num_clases=5)


def test_every_preset_from_one_class_and_the_wrong_class_refused(trained):
    _, folder, _, _ = trained
    mobile = EMANetImageSegmenter.from_preset("emanet_mobilenetv3_small_voc", num_classes=2)
    assert type(mobile) is EMANetImageSegmenter
    assert type(mobile.backbone) is MobileEMANetBackbone
    # 0.1's classes build the family, of their own architecture only.
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match="not EMANet's architecture: build it with"):
            EMANet.from_preset("emanet_mobilenetv3_small_voc")
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match="holds ema_keras>EMANetImageSegmenter, it is not "
                           "MobileEMANet's architecture"):  # fmt: skip
            MobileEMANet.from_preset(str(folder))
    with pytest.warns(DeprecationWarning):
        assert type(EMANet.from_preset(str(folder))) is EMANetImageSegmenter


def test_a_used_folder_is_refused_before_anything_is_written(trained, tmp_path):
    model = trained[0]
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        model.save_to_preset(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["mine.txt"]


def test_a_preset_carrying_code_is_refused(trained, tmp_path):
    _, folder, _, _ = trained
    config = json.loads((folder / "config.json").read_text())
    inputs = keras.Input((None, None, 3))
    p5 = keras.layers.Lambda(lambda x: x * 2.0, name="code")(inputs)
    evil = keras.Model(inputs, {"P5": p5})
    config["config"]["backbone"] = keras.saving.serialize_keras_object(evil)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="(?i)lambda"):
        EMANetImageSegmenter.from_preset(str(bad), load_weights=False)
    (bad / "config.json").write_text(json.dumps(keras.saving.serialize_keras_object(evil)))
    with pytest.raises(ValueError, match="not an EMANet segmenter"):
        EMANetImageSegmenter.from_preset(str(bad), load_weights=False)


def test_hugging_face_preset_through_the_hub_clients_offline_cache(trained, tmp_path, monkeypatch):
    """hf:// read by huggingface_hub's own hf_hub_download from its cache, offline."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    _, folder, batch, expected = trained
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someone--tiny"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in os.listdir(folder):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    path = huggingface_hub.hf_hub_download(repo_id="someone/tiny", filename="config.json")
    assert path.startswith(str(tmp_path))
    loaded = EMANetImageSegmenter.from_preset("hf://someone/tiny")
    np.testing.assert_array_equal(loaded(batch).numpy(), expected)


def test_kaggle_preset_through_the_hub_clients_cache(trained, tmp_path, monkeypatch):
    """kaggle:// read by kagglehub's own model_download from a cache kagglehub filled in."""
    pytest.importorskip("kagglehub")
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_model_handle

    _, folder, batch, expected = trained
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    handle = parse_model_handle("someone/emanet/keras/tiny/1")
    cache = Cache()
    bundle = cache.get_path(handle)
    os.makedirs(bundle)
    for name in os.listdir(folder):
        with open(os.path.join(bundle, name), "wb") as file:
            file.write((folder / name).read_bytes())
    cache.mark_as_complete(handle)  # what kagglehub writes after a finished download
    loaded = EMANetImageSegmenter.from_preset("kaggle://someone/emanet/keras/tiny/1")
    np.testing.assert_array_equal(loaded(batch).numpy(), expected)
    with pytest.raises(ValueError, match="kaggle://<owner>/<model>/keras/<variant>"):
        EMANetImageSegmenter.from_preset("kaggle://someone/emanet")
