"""Presets: lookup, descriptions, weights files."""

import os

import keras
import numpy as np
import pytest

from ema_keras.models import (
    PRESETS,
    DilatedResNet,
    EMANetBackbone,
    EMANetImageSegmenter,
    get_preset,
)
from ema_keras.models.presets import describe_preset, resolve_weights, unregister_preset


def register_preset(*args, **kwargs):
    """The deprecated registration, its warning checked."""
    from ema_keras.models import register_preset as deprecated

    with pytest.warns(DeprecationWarning, match="save_to_preset"):
        deprecated(*args, **kwargs)

NAME = "test_tiny_with_weights"


@pytest.fixture
def saved_tiny(tmp_path):
    """A trained-looking tiny EMANet saved as .keras, and its output on a batch."""
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=4, seed=11)
    batch = np.random.default_rng(0).normal(size=(2, 32, 40, 3)).astype("float32")
    model(batch, training=True)  # BN statistics and EMA bases off their init
    path = os.path.join(str(tmp_path), "tiny.keras")
    model.save(path)
    yield path, batch, model(batch).numpy()
    try:
        unregister_preset(NAME)
    except KeyError:
        pass


@pytest.mark.parametrize("as_url", [False, True])
def test_preset_with_weights_loads_them(saved_tiny, as_url):
    path, batch, expected = saved_tiny
    config = get_preset("emanet_tiny_demo")
    config["num_classes"] = 4
    weights = "file://" + os.path.abspath(path) if as_url else path
    register_preset(NAME, config, description="Tiny, with weights.", weights=weights)
    loaded = EMANetImageSegmenter.from_preset(NAME)
    assert type(loaded) is EMANetImageSegmenter and loaded.num_classes == 4
    np.testing.assert_array_equal(loaded(batch).numpy(), expected)
    fresh = EMANetImageSegmenter.from_preset(NAME, load_weights=False)
    assert not np.allclose(fresh(batch).numpy(), expected)
    # Overrides that keep the weights' shapes still load them.
    os16 = EMANetImageSegmenter.from_preset(NAME, output_stride=16, dropout=0.0)
    np.testing.assert_array_equal(
        os16.get_layer("classifier_conv").kernel.numpy(),
        loaded.get_layer("classifier_conv").kernel.numpy(),
    )
    with pytest.raises(ValueError, match="exists"):
        register_preset(NAME, config, description="again")


def test_builtin_presets_carry_no_weights_and_say_so():
    for name in PRESETS:
        assert "no weights yet" in describe_preset(name), name
        assert PRESETS[name].weights is None
    with pytest.raises(TypeError):
        PRESETS["mine"] = PRESETS["emanet_tiny_demo"]  # the built-ins are read-only
    with pytest.raises(ValueError, match="built in"):
        register_preset("emanet_tiny_demo", get_preset("emanet_tiny_demo"), description="x")
    with pytest.raises(ValueError, match="'emanet_tiny_demo' carries no weights"):
        EMANetImageSegmenter.from_preset("emanet_tiny_demo", load_weights=True)


def test_weights_locations(tmp_path):
    assert resolve_weights(None) is None
    missing = os.path.join(str(tmp_path), "missing.keras")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        resolve_weights(missing)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        resolve_weights("file://" + missing)
    with pytest.raises(ValueError, match="unsupported scheme 'hf'"):
        resolve_weights("hf://someone/emanet")
    register_preset(NAME, get_preset("emanet_tiny_demo"), description="x", weights=missing)
    try:
        with pytest.raises(FileNotFoundError, match=f"Preset '{NAME}': weights file not found"):
            EMANetImageSegmenter.from_preset(NAME)
    finally:
        unregister_preset(NAME)


def test_pyramid_outputs_are_the_stage_outputs():
    model = EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo", num_classes=3, image_shape=(64, 48, 3)
    )
    pyramid = model.backbone.pyramid_outputs
    assert list(pyramid) == ["P2", "P3", "P4", "P5"]
    shapes = {name: tuple(tensor.shape) for name, tensor in pyramid.items()}
    assert shapes == {
        "P2": (None, 16, 12, 32), "P3": (None, 8, 6, 64),
        "P4": (None, 8, 6, 128), "P5": (None, 8, 6, 256),
    }  # fmt: skip
    assert all(pyramid[name] is model.backbone.output[name] for name in pyramid)
    assert model.image_encoder.image_shape == (64, 48, 3)  # image_shape goes to the encoder
    assert isinstance(model.image_encoder, DilatedResNet)
    encoder = model.image_encoder.pyramid_outputs
    assert all(tuple(encoder[name].shape) == shapes[name] for name in shapes)


def test_any_backbone_with_pyramid_outputs():
    # keras-hub's backbones expose `pyramid_outputs` while returning something else.
    inputs = keras.Input((None, None, 3))
    p4 = keras.layers.Conv2D(8, 3, strides=8, padding="same")(inputs)
    p5 = keras.layers.Conv2D(16, 3, padding="same")(p4)
    backbone = keras.Model(inputs, p5)
    backbone.pyramid_outputs = {"P4": p4, "P5": p5}
    model = EMANetImageSegmenter(
        backbone=EMANetBackbone(
            image_encoder=backbone, head_channels=8, classifier_channels=8, ema_num_bases=4
        ),
        num_classes=3, aux_head=True, aux_channels=8,
    )  # fmt: skip
    outputs = model(np.zeros((1, 32, 32, 3), "float32"))
    assert tuple(outputs["logits"].shape) == tuple(outputs["aux_logits"].shape) == (1, 32, 32, 3)
    backbone.pyramid_outputs = {"P4": p4}
    with pytest.raises(ValueError, match=r"lack \['P5'\]"):
        EMANetBackbone(image_encoder=backbone)
    backbone.pyramid_outputs = {"P5": p5}
    with pytest.raises(ValueError, match="`aux_head` reads the encoder's P4"):
        EMANetImageSegmenter(backbone=EMANetBackbone(image_encoder=backbone), aux_head=True)
