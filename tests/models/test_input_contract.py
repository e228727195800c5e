"""Raw pixels in: the normalisation layer, the option, old files, and a JPEG through load_model."""

import json
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image

from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ema_keras.layers import ImageNormalization
from ema_keras.models import (
    EMANetImageSegmenter,
    MobileNetV3Backbone,
    build_preset,
    expects_raw_pixels,
    model_inputs,
)

MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)
NUM_CLASSES = 5


def tiny(include_preprocessing=True, **overrides):
    return EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo",
        num_classes=NUM_CLASSES,
        seed=0,
        include_preprocessing=include_preprocessing,
        **overrides,
    )


def smooth_image(height=48, width=64, seed=0):
    """uint8 RGB with large smooth regions (JPEG keeps them close to what was written)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (1, 4, 5, 3)).astype("float32")
    image = keras.ops.image.resize(coarse, (height, width)).numpy()[0]
    return np.clip(np.round(image), 0, 255).astype("uint8")


def drop_key(config, key):
    """`config` (nested dicts and lists) without `key` anywhere: a config saved before it."""
    if isinstance(config, dict):
        return {k: drop_key(v, key) for k, v in config.items() if k != key}
    if isinstance(config, list):
        return [drop_key(v, key) for v in config]
    return config


def as_older_file(path, older_path, key="include_preprocessing"):
    """Rewrites a `.keras` file as an earlier version wrote it: no `key` in its config."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(older_path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                assert key in json.dumps(config)
                data = json.dumps(drop_key(config, key)).encode()
            target.writestr(item, data)
    return older_path


# --- the layer ------------------------------------------------------------------


def test_normalization_values_targets_and_config():
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    layer = ImageNormalization()
    np.testing.assert_allclose(layer(pixels), (pixels - MEAN) / STD, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(layer(np.broadcast_to(MEAN, (1, 2, 2, 3))), 0.0)  # padding
    np.testing.assert_allclose(layer(pixels.astype("uint8")), (pixels.astype("uint8") - MEAN) / STD,
                               rtol=1e-6, atol=1e-6)  # fmt: skip
    unit = ImageNormalization("unit_range")
    np.testing.assert_allclose(unit(pixels), pixels / 127.5 - 1.0, rtol=1e-6, atol=1e-6)
    clone = ImageNormalization.from_config(unit.get_config())
    assert clone.target == "unit_range" and not clone.weights
    with pytest.raises(ValueError, match="target"):
        ImageNormalization("caffe")


def test_normalization_keeps_float32_under_mixed_bfloat16():
    pixels = np.random.default_rng(1).uniform(0, 255, (1, 9, 11, 3)).astype("float32")
    expected = (pixels.astype(np.float64) - MEAN) / STD
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = ImageNormalization()
        outputs = layer(pixels)
        model = tiny()
        backbone = model.image_encoder
        probe = keras.Model(backbone.input, backbone.get_layer("imagenet_normalization").output)
        in_model = probe(pixels)
        logits = model(pixels)
    finally:
        keras.config.set_dtype_policy(previous)
    for normalised in (outputs, in_model):
        assert keras.backend.standardize_dtype(normalised.dtype) == "float32"
        # float32 accuracy: bfloat16 would be off by ~1e-2 here.
        np.testing.assert_allclose(np.asarray(normalised), expected, rtol=1e-6, atol=2e-6)
    assert backbone.get_layer("conv1_1_conv").compute_dtype == "bfloat16"  # the rest is mixed
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert np.isfinite(np.asarray(logits)).all()


# --- the option ------------------------------------------------------------------


def test_new_models_take_raw_pixels_and_the_option_turns_it_off():
    raw, plain = tiny(), tiny(include_preprocessing=False)
    assert raw.image_encoder.include_preprocessing
    assert not plain.image_encoder.include_preprocessing
    assert expects_raw_pixels(raw) and not expects_raw_pixels(plain)
    assert raw.count_params() == plain.count_params()  # the normalisation has no weights
    names = {layer.name for layer in plain.image_encoder.layers}
    assert "imagenet_normalization" not in names
    plain.set_weights(raw.get_weights())
    pixels = smooth_image()[None].astype("float32")
    np.testing.assert_allclose(
        plain.predict((pixels - MEAN) / STD, verbose=0), raw.predict(pixels, verbose=0), atol=1e-4
    )
    np.testing.assert_allclose(
        plain.predict(model_inputs(plain, pixels), verbose=0),
        raw.predict(model_inputs(raw, pixels), verbose=0),
        atol=1e-4,
    )
    mobile = build_preset("emanet_mobilenetv3_small_voc", include_preprocessing=False)
    assert isinstance(mobile.image_encoder, MobileNetV3Backbone)
    assert not expects_raw_pixels(mobile)
    assert expects_raw_pixels(build_preset("emanet_mobilenetv3_small_voc"))


def test_a_folded_copy_still_takes_raw_pixels():
    from ema_keras.inference.folding import fold_batch_norm

    assert expects_raw_pixels(fold_batch_norm(tiny()))
    assert not expects_raw_pixels(fold_batch_norm(tiny(include_preprocessing=False)))


# --- files ------------------------------------------------------------------------


def test_load_model_predict_on_raw_jpeg_pixels_gives_the_reference_classes(tmp_path):
    model = tiny()
    keras.utils.set_random_seed(0)
    model.save(tmp_path / "model.keras")
    Image.fromarray(smooth_image()).save(tmp_path / "photo.jpg", quality=90)

    # What a new user does: load the file, read a JPEG, predict.
    loaded = keras.models.load_model(tmp_path / "model.keras")
    pixels = keras.utils.img_to_array(keras.utils.load_img(tmp_path / "photo.jpg"))[None]
    classes = loaded.predict(pixels, verbose=0).argmax(-1)

    # The reference: the same weights in a model without preprocessing, fed
    # pixels normalised in NumPy.
    reference = tiny(include_preprocessing=False)
    reference.set_weights(model.get_weights())
    logits = reference.predict((pixels - MEAN) / STD, verbose=0)
    top2 = np.sort(logits, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-3  # pixels not on a near-tie
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(classes[clear], logits.argmax(-1)[clear])
    # Raw pixels fed to a model that expects normalised ones: other classes (the old bug).
    assert (reference.predict(pixels, verbose=0).argmax(-1) != classes).mean() > 0.1


def test_a_file_saved_before_raw_pixels_loads_with_its_old_contract(tmp_path):
    old_model = tiny(include_preprocessing=False)  # what earlier versions built
    old_model.save(tmp_path / "saved.keras")
    older = as_older_file(tmp_path / "saved.keras", tmp_path / "older.keras")
    loaded = keras.models.load_model(older)
    assert isinstance(loaded, EMANetImageSegmenter)
    assert not loaded.image_encoder.include_preprocessing
    assert not expects_raw_pixels(loaded)
    normalised = ((smooth_image()[None] - MEAN) / STD).astype("float32")
    np.testing.assert_array_equal(
        loaded.predict(normalised, verbose=0), old_model.predict(normalised, verbose=0)
    )
    # Saved again, it says so in its config and keeps it.
    loaded.save(tmp_path / "again.keras")
    assert not expects_raw_pixels(keras.models.load_model(tmp_path / "again.keras"))
    # A new model's file keeps raw pixels.
    tiny().save(tmp_path / "new.keras")
    assert expects_raw_pixels(keras.models.load_model(tmp_path / "new.keras"))


def test_mobile_config_without_the_key_means_normalised_input():
    config = build_preset("emanet_mobilenetv3_small_voc", include_preprocessing=False).get_config()
    older = EMANetImageSegmenter.from_config(drop_key(config, "include_preprocessing"))
    assert not older.image_encoder.include_preprocessing
    assert "imagenet_to_unit_range" in {layer.name for layer in older.image_encoder.layers}
