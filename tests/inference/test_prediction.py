"""predict: output names, and nothing a user gave is overwritten (library and CLI)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ema_keras.data.image_io import load_label
from ema_keras.inference.prediction import (
    OutputConflictError,
    plan_predictions,
    predict_files,
    predict_label_map,
)
from ema_keras.models import EMANetImageSegmenter
from tests.tf_log_level import TESTS_TF_LOG_LEVEL

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def model():
    return EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=NUM_CLASSES, seed=0)


def write_images(folder, *names, seed=0):
    """Small random RGB images; returns {name: bytes on disk}."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        pixels = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, name))
    return snapshot(folder)


def snapshot(folder):
    """{file name: bytes} of the files in `folder`."""
    paths = {name: os.path.join(folder, name) for name in sorted(os.listdir(folder))}
    return {name: open(path, "rb").read() for name, path in paths.items() if os.path.isfile(path)}


def test_an_output_folder_holding_the_inputs_is_refused_and_nothing_changes(model, tmp_path):
    before = write_images(tmp_path, "cat.png", "dog.jpg")
    for inputs in ([str(tmp_path)], [str(tmp_path / "dog.jpg")]):
        with pytest.raises(OutputConflictError, match="holds the input|overwrite the input"):
            predict_files(model, inputs, str(tmp_path))
    assert snapshot(tmp_path) == before


def test_an_output_named_as_another_input_is_refused_naming_it(model, tmp_path):
    # x.jpg's overlay would be x_overlay.jpg, another input.
    before = write_images(tmp_path, "x.jpg", "x_overlay.jpg")
    with pytest.raises(OutputConflictError, match=r"overwrite the input .*x_overlay\.jpg"):
        predict_files(model, [str(tmp_path)], str(tmp_path))
    # Through a link in the output folder too.
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(tmp_path / "x.jpg", out / "x_overlay.jpg")
    with pytest.raises(OutputConflictError, match="overwrite the input"):
        predict_files(model, [str(tmp_path / "x.jpg")], str(out))
    assert os.listdir(out) == ["x_overlay.jpg"]
    assert {name: snapshot(tmp_path)[name] for name in before} == before


def test_inputs_sharing_a_stem_get_distinct_outputs_and_all_are_written(model, tmp_path):
    images = tmp_path / "images"
    write_images(images, "a.jpg", "a.png", "B.png", "b.bmp", "c.jpg")
    write_images(tmp_path / "day2", "c.jpg", seed=1)
    inputs = [str(images), str(tmp_path / "day2" / "c.jpg"), str(images / "a.jpg")]
    written = predict_files(model, inputs, str(tmp_path / "out")).written
    names = [os.path.basename(path) for path in written]
    # The stem alone where it is unique; the extension where stems collide (ignoring
    # case); the folder as well for the same file name in two folders. a.jpg given
    # twice is predicted once.
    assert names == ["B_png.png", "a_jpg.png", "a_png.png", "b_bmp.png", "images_c_jpg.png",
                     "day2_c_jpg.png"]
    sources = [images / "B.png", images / "a.jpg", images / "a.png", images / "b.bmp",
               images / "c.jpg", tmp_path / "day2" / "c.jpg"]
    for path, source in zip(written, sources):
        image = np.asarray(Image.open(source).convert("RGB"))
        np.testing.assert_array_equal(load_label(path), predict_label_map(model, image))
    expected = sorted(names + [name[: -len(".png")] + "_overlay.jpg" for name in names])
    assert sorted(os.listdir(tmp_path / "out")) == expected


def test_a_file_not_written_by_predict_is_kept_and_its_own_outputs_are_replaced(model, tmp_path):
    write_images(tmp_path / "images", "a.jpg", "b.jpg")
    out = tmp_path / "out"
    write_images(out, "b_overlay.jpg", seed=2)  # someone else's file, at b's overlay path
    before = snapshot(out)
    with pytest.raises(OutputConflictError, match=r"b_overlay\.jpg exists and was not written"):
        predict_files(model, [str(tmp_path / "images")], str(out))
    assert snapshot(out) == before  # a.jpg, planned first, was not written either

    os.remove(out / "b_overlay.jpg")
    predict_files(model, [str(tmp_path / "images")], str(out))
    first = snapshot(out)
    # A re-run replaces what predict wrote; the files come out the same.
    predict_files(model, [str(tmp_path / "images")], str(out))
    assert snapshot(out) == first and len(first) == 4


def test_plan_refuses_two_inputs_that_no_name_can_tell_apart(tmp_path):
    write_images(tmp_path / "x" / "day1", "a.jpg")
    write_images(tmp_path / "y" / "day1", "a.jpg")
    with pytest.raises(OutputConflictError, match="would both be written as day1_a_jpg.png"):
        plan_predictions(
            [str(tmp_path / "x" / "day1"), str(tmp_path / "y" / "day1")], str(tmp_path / "out")
        )


# --- the CLI ------------------------------------------------------------------


def run_predict(*flags):
    command = [sys.executable, os.path.join(REPO, "recipes", "predict.py"), *flags]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_cli_refuses_an_output_folder_holding_an_input_and_writes_nothing(tmp_path):
    before = write_images(tmp_path, "cat.png")
    result = run_predict(
        f"--model={tmp_path / 'none.keras'}",
        f"--inputs={tmp_path / 'cat.png'}",
        f"--output_dir={tmp_path}",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"predict.py: writing {tmp_path / 'cat.png'} would overwrite the input "
        f"{tmp_path / 'cat.png'}: choose an output_dir that holds no input"
    )
    assert snapshot(tmp_path) == before


def test_cli_says_a_truncated_model_is_not_a_valid_keras_file(model, tmp_path):
    write_images(tmp_path / "images", "a.jpg")
    path = tmp_path / "model.keras"
    model.save(path)
    path.write_bytes(path.read_bytes()[:1000])
    result = run_predict(
        f"--model={path}", f"--inputs={tmp_path / 'images'}", f"--output_dir={tmp_path / 'out'}"
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"predict.py: {path} is not a valid .keras file: "
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dataset", ["voc", "cityscapes"])
def test_label_maps_carry_the_datasets_palette(model, tmp_path, dataset):
    from ema_keras.data.datasets import get_dataset

    write_images(tmp_path / "images", "a.jpg")
    (written,) = predict_files(model, [str(tmp_path / "images")], str(tmp_path / "out"),
                               dataset=dataset).written
    with Image.open(written) as image:
        palette = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[:NUM_CLASSES]
    np.testing.assert_array_equal(palette, get_dataset(dataset).colormap()[:NUM_CLASSES])
    if dataset == "cityscapes":
        assert tuple(palette[0]) == (128, 64, 128)  # road, in cityscapesScripts' colours
