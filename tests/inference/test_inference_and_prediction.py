import os

import keras
import numpy as np
import pytest
from PIL import Image

from ema_keras.data import write_demo_dataset
from ema_keras.data.image_io import load_label
from ema_keras.data.voc import read_voc_split
from ema_keras.inference.evaluation import evaluate
from ema_keras.inference import predict_probabilities, sliding_window_logits
from ema_keras.inference.prediction import predict_files, predict_label_map
from ema_keras.models import model_inputs

NUM_CLASSES = 3


def pointwise_model(num_classes=NUM_CLASSES):
    """A 1x1-conv model: flip- and translation-equivariant by construction."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(num_classes, 1, kernel_initializer="glorot_normal")(inputs)
    return keras.Model(inputs, outputs)


def block_image(height=48, width=64, seed=0):
    """Four large constant quadrants: resizing keeps every pixel away from the seams."""
    colours = np.random.default_rng(seed).normal(size=(2, 2, 3)) * 2
    image = np.zeros((1, height, width, 3), np.float32)
    image[0, : height // 2, : width // 2] = colours[0, 0]
    image[0, : height // 2, width // 2 :] = colours[0, 1]
    image[0, height // 2 :, : width // 2] = colours[1, 0]
    image[0, height // 2 :, width // 2 :] = colours[1, 1]
    return image


def test_flip_of_an_equivariant_model_equals_single_scale():
    model = pointwise_model()
    image = np.random.default_rng(1).normal(size=(2, 20, 30, 3)).astype("float32")
    single = predict_probabilities(model, image)
    flipped = predict_probabilities(model, image, flip=True)
    np.testing.assert_allclose(flipped, single, atol=1e-6)


def test_multi_scale_and_flip_of_an_equivariant_model_gives_the_single_scale_labels():
    model = pointwise_model()
    image = block_image()
    single = predict_probabilities(model, image)
    multi = predict_probabilities(model, image, scales=(0.5, 0.75, 1.0, 1.25, 1.5), flip=True)
    assert multi.shape == single.shape
    agreement = (multi.argmax(-1) == single.argmax(-1)).mean()
    assert agreement > 0.97
    # Inside the quadrants (away from seams) the probabilities are the same.
    np.testing.assert_allclose(multi[0, 4:20, 4:28], single[0, 4:20, 4:28], atol=1e-5)


def test_sliding_window_of_a_pointwise_model_equals_whole_image():
    model = pointwise_model()
    image = np.random.default_rng(2).normal(size=(1, 37, 50, 3)).astype("float32")
    whole = model(model_inputs(model, image)).numpy()  # a plain model: normalised input
    for window, stride in ((16, 10), (32, None), (64, None)):  # 64 > image: padded and cut
        tiled = sliding_window_logits(model, image, window, stride)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_predict_files_writes_palette_labels_and_overlays(tmp_path):
    model = pointwise_model(num_classes=21)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    inputs = {"a.jpg": (40, 30), "b.png": (25, 35)}
    for name, size in inputs.items():
        Image.fromarray(rng.integers(0, 255, size=size + (3,), dtype=np.uint8)).save(images / name)
    written = predict_files(model, [str(images)], str(tmp_path / "out")).written
    assert [os.path.basename(p) for p in written] == ["a.png", "b.png"]
    for path, (name, size) in zip(written, inputs.items()):
        label = load_label(path)
        assert label.shape == size
        with Image.open(path) as png:
            assert png.mode == "P"
        image = np.asarray(Image.open(images / name).convert("RGB"))
        np.testing.assert_array_equal(label, predict_label_map(model, image))
        assert os.path.isfile(path[: -len(".png")] + "_overlay.jpg")


def test_predict_files_names_a_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        predict_files(pointwise_model(), [str(tmp_path / "nope.jpg")], str(tmp_path / "out"))


def test_evaluate_scores_a_perfect_predictor_as_one(tmp_path):
    voc_root = write_demo_dataset(str(tmp_path / "demo"), num_train=2, num_val=3, seed=4)
    examples = read_voc_split(voc_root, "val")

    class Oracle:
        """Returns one-hot logits of the true labels of the image it is given."""

        def __init__(self):
            self.labels = [load_label(e.label_path) for e in examples]
            self.index = 0

        def __call__(self, images, training=False):
            label = self.labels[self.index]
            self.index += 1
            logits = np.eye(21, dtype=np.float32)[np.where(label == 255, 0, label)] * 10
            return keras.ops.convert_to_tensor(logits[None])

    result = evaluate(Oracle(), examples, num_classes=21)
    assert result.num_images == 3
    assert result.mean_iou == pytest.approx(1.0)
    present = [name for name, iou in zip(result.class_names, result.per_class_iou) if iou == iou]
    assert "background" in present and len(present) >= 2
    assert "| **mean** | **100.00** |" in result.to_markdown()
