"""Attention maps: the EMA unit's responsibilities, their grid, and predict's --attention_maps."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from ema_keras.inference.attention_maps import (
    AttentionMaps,
    attention_grid,
    attention_maps,
    grid_pixel_size,
    heat_colours,
    tile_size,
)
from ema_keras.inference.prediction import (
    OUTPUT_MARKER,
    OutputConflictError,
    plan_predictions,
    predict_files,
)
from ema_keras.model_files import load_keras_model
from ema_keras.models import EMANetImageSegmenter
from tests.tf_log_level import TESTS_TF_LOG_LEVEL

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 3
IMAGE_SHAPE = (40, 56, 3)


@pytest.fixture(scope="module")
def model():
    return EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=NUM_CLASSES, seed=0)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, size=IMAGE_SHAPE, dtype=np.uint8)


def unit_input(model, image):
    """(h, w, C) float64 features the EMA unit receives for `image` (raw pixels in)."""
    features = keras.Model(model.backbone.input, model.backbone.get_layer("ema_unit").input)(
        image[None].astype(np.float32), training=False
    )
    return np.asarray(features, np.float64)[0]


def em_by_hand(model, features):
    """The unit's input projection and EMANET.md's EM iterations, in numpy."""
    unit = model.backbone.get_layer("ema_unit")
    kernel = np.asarray(unit.input_kernel, np.float64)[0, 0]  # (C, C)
    x = features.reshape(-1, features.shape[-1]) @ kernel + np.asarray(unit.input_bias)
    bases = np.asarray(unit.em_attention.bases, np.float64)  # (C, K)
    for _ in range(unit.em_attention.num_iterations):
        logits = x @ bases
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        z /= z.sum(axis=1, keepdims=True)
        bases = x.T @ (z / (1e-6 + z.sum(axis=0, keepdims=True)))
        bases /= 1e-6 + np.linalg.norm(bases, axis=0, keepdims=True)
    return z.reshape(features.shape[:2] + (-1,))


def test_responsibilities_sum_to_one_at_the_units_feature_resolution(model, image):
    maps = attention_maps(model, image)
    num_bases = model.backbone.get_layer("ema_unit").num_bases
    assert maps.responsibilities.shape == unit_input(model, image).shape[:2] + (num_bases,)
    assert maps.responsibilities.shape == (5, 7, 8)  # output stride 8
    np.testing.assert_allclose(maps.responsibilities.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(maps.mass, maps.responsibilities.sum(axis=(0, 1)), rtol=1e-6)
    upsampled = maps.upsampled(IMAGE_SHAPE[:2])
    assert upsampled.shape == IMAGE_SHAPE[:2] + (num_bases,)
    np.testing.assert_allclose(upsampled.sum(axis=-1), 1.0, atol=1e-5)


def test_responsibilities_are_the_em_iterations_on_the_units_input(model, image):
    maps = attention_maps(model, image)
    expected = em_by_hand(model, unit_input(model, image))
    np.testing.assert_allclose(maps.responsibilities, expected, atol=1e-5)
    # The same weights in a model that expects normalised input: the same maps.
    plain = EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo", num_classes=NUM_CLASSES, seed=0, include_preprocessing=False
    )
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(
        attention_maps(plain, image).responsibilities, maps.responsibilities, atol=1e-5
    )


def test_a_model_loaded_from_a_keras_file_gives_the_same_maps(model, image, tmp_path):
    model.save(tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        attention_maps(loaded, image).responsibilities,
        attention_maps(model, image).responsibilities,
        atol=1e-6,
    )


def test_bases_are_ordered_by_mass_largest_first(model, image):
    maps = attention_maps(model, image)
    assert sorted(maps.order) == list(range(len(maps.mass)))
    assert np.all(np.diff(maps.mass[maps.order]) <= 0)
    known = AttentionMaps(np.zeros((2, 2, 3), np.float32), np.array([1.0, 3.0, 0.0], np.float32))
    assert list(known.order) == [1, 0, 2]


def test_the_grid_has_rows_and_columns_of_tiles_largest_mass_first(image):
    # Base 2 takes every pixel; the others none.
    responsibilities = np.zeros((5, 7, 4), np.float32)
    responsibilities[..., 2] = 1.0
    maps = AttentionMaps(responsibilities, responsibilities.sum(axis=(0, 1)))
    grid = attention_grid(image, maps, num_bases=3)
    assert grid.shape == (40, 3 * 56 + 2 * 2, 3)  # one row of three tiles, 2-pixel gaps
    # The first tile is base 2 at responsibility 1: 25% image, 75% the ramp's top.
    expected = 0.25 * image[-1, -1].astype(np.float32) + 0.75 * heat_colours(1.0)
    np.testing.assert_allclose(grid[-1, 55], expected, atol=1.0)
    np.testing.assert_array_equal(grid[-1, 58 + 55], image[-1, -1])  # base 0: the image alone

    assert attention_grid(image, maps, num_bases=8).shape == (40, 4 * 56 + 6, 3)  # at most K
    big = np.zeros((600, 300, 3), np.uint8)
    assert tile_size(big.shape) == (256, 128)
    assert grid_pixel_size(big.shape, 8) == (2 * 256 + 2, 4 * 128 + 6)
    maps8 = AttentionMaps(np.full((5, 5, 8), 1 / 8, np.float32), np.full(8, 25 / 8, np.float32))
    assert attention_grid(big, maps8, num_bases=8).shape == (2 * 256 + 2, 4 * 128 + 6, 3)


def write_images(folder, *names):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in names:
        pixels = rng.integers(0, 256, size=IMAGE_SHAPE, dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, name))


def test_predict_writes_an_attention_grid_per_image_and_replaces_only_its_own(model, tmp_path):
    write_images(tmp_path / "images", "a.jpg", "b.png")
    out = tmp_path / "out"
    predict_files(model, [str(tmp_path / "images")], str(out), attention_maps=True,
                  attention_bases=4)
    assert sorted(os.listdir(out)) == ["a.png", "a_attention.png", "a_overlay.jpg",
                                       "b.png", "b_attention.png", "b_overlay.jpg"]
    with Image.open(out / "a_attention.png") as grid:
        assert grid.size == (4 * 56 + 6, 40) and grid.mode == "RGB"
        assert grid.info["Software"] == OUTPUT_MARKER
    first = (out / "a_attention.png").read_bytes()
    predict_files(model, [str(tmp_path / "images")], str(out), attention_maps=True,
                  attention_bases=4)  # a re-run replaces what predict wrote
    assert (out / "a_attention.png").read_bytes() == first

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(out / "b_attention.png")  # not ours
    with pytest.raises(OutputConflictError, match=r"b_attention\.png exists and was not written"):
        plan_predictions([str(tmp_path / "images")], str(out), attention_maps=True)
    plan_predictions([str(tmp_path / "images")], str(out))  # not planned: not in the way


def test_an_attention_output_colliding_with_an_input_or_another_output_is_refused(tmp_path):
    write_images(tmp_path, "x.jpg", "x_attention.png")
    plan_predictions([str(tmp_path / "x.jpg")], str(tmp_path / "out"))  # without the grids
    with pytest.raises(OutputConflictError, match=r"overwrite the input .*x_attention\.png"):
        plan_predictions([str(tmp_path)], str(tmp_path), attention_maps=True)
    # y's attention grid would be the label map of y_attention.jpg.
    write_images(tmp_path / "more", "y.jpg", "y_attention.jpg")
    with pytest.raises(OutputConflictError, match=r"would both be written as .*y_attention\.png"):
        plan_predictions([str(tmp_path / "more")], str(tmp_path / "out"), attention_maps=True)
    assert not (tmp_path / "out").exists()


def test_cli_attention_maps_writes_the_grid(model, tmp_path):
    write_images(tmp_path / "images", "cat.jpg")
    model.save(tmp_path / "model.keras")
    command = [
        sys.executable, os.path.join(REPO, "recipes", "predict.py"),
        f"--model={tmp_path / 'model.keras'}", f"--inputs={tmp_path / 'images'}",
        f"--output_dir={tmp_path / 'out'}", "--attention_maps", "--attention_bases=3",
    ]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "attention maps" in result.stdout
    with Image.open(tmp_path / "out" / "cat_attention.png") as grid:
        assert grid.size == (3 * 56 + 4, 40)
