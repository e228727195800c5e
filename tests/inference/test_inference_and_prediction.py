import os

import keras
import numpy as np
import pytest
from PIL import Image

from ema_keras.data import write_demo_dataset
from ema_keras.data.image_io import load_label
from ema_keras.data.voc import read_voc_split
from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ema_keras.inference import predict_probabilities, sliding_window_logits
from ema_keras.inference.evaluation import evaluate
from ema_keras.inference.prediction import predict_files, predict_label_map
from ema_keras.models import model_inputs

NUM_CLASSES = 3


def pointwise_model(num_classes=NUM_CLASSES):
    """A 1x1-conv model: flip- and translation-equivariant by construction."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(num_classes, 1, kernel_initializer="glorot_normal")(inputs)
    return keras.Model(inputs, outputs)


def asymmetric_model(num_classes=NUM_CLASSES):
    """A 3x3 conv with a random kernel and a ReLU: neither flip- nor scale-equivariant."""
    inputs = keras.Input((None, None, 3))
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(num_classes, 3, padding="same")(hidden)
    return keras.Model(inputs, outputs)


def numpy_bilinear_resize(images, height, width):
    """Bilinear resize with half-pixel centres (what tf.image.resize does), in NumPy."""

    def axis_weights(in_size, out_size):
        source = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
        lower = np.minimum(np.floor(source).astype(int), in_size - 1)
        upper = np.minimum(lower + 1, in_size - 1)
        return lower, upper, source - lower

    top, bottom, row_weight = axis_weights(images.shape[1], height)
    left, right, column_weight = axis_weights(images.shape[2], width)
    row_weight = row_weight[None, :, None, None]
    column_weight = column_weight[None, None, :, None]
    rows = images[:, top] * (1 - row_weight) + images[:, bottom] * row_weight
    return rows[:, :, left] * (1 - column_weight) + rows[:, :, right] * column_weight


def numpy_multi_scale_probabilities(model, pixels, scales, flip):
    """The multi-scale + flip average written out: resize, (mirror), run, mirror back,
    resize back, softmax, mean over every variant."""
    height, width = pixels.shape[1:3]
    normalised = (pixels - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    probabilities = []
    for scale in scales:
        size = (int(np.floor(height * scale + 0.5)), int(np.floor(width * scale + 0.5)))
        scaled = numpy_bilinear_resize(normalised, *size).astype("float32")
        for mirrored in (False, True) if flip else (False,):
            logits = model(scaled[:, :, ::-1] if mirrored else scaled).numpy()
            logits = logits[:, :, ::-1] if mirrored else logits
            logits = numpy_bilinear_resize(logits, height, width)
            exponentials = np.exp(logits - logits.max(-1, keepdims=True))
            probabilities.append(exponentials / exponentials.sum(-1, keepdims=True))
    return np.mean(probabilities, axis=0)


@pytest.mark.parametrize(
    "scales,flip", [((1.0,), True), ((0.5, 0.75, 1.0, 1.25, 1.5), False), ((0.5, 1.0, 1.75), True)]
)
def test_multi_scale_and_flip_equal_an_independent_numpy_computation(scales, flip):
    model = asymmetric_model()
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 20, 30, 3)).astype("float32")
    expected = numpy_multi_scale_probabilities(model, pixels, scales, flip)
    actual = predict_probabilities(model, pixels, scales=scales, flip=flip)
    np.testing.assert_allclose(actual, expected, atol=2e-5)
    # The model is far from equivariant: ignoring `scales` or `flip` would fail above.
    single = predict_probabilities(model, pixels)
    assert np.abs(actual - single).max() > 0.05


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
