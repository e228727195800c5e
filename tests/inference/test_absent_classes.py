"""Classes absent from the evaluated split: reported as absent, left out of the mean.

One hand-computed example, 4 classes, labels and predictions (255 = ignore):

    labels        predictions     pairs (label, prediction) of the 7 valid pixels:
    0 0 1 1       0 2 1 1         (0,0) (0,2) (1,1) (1,1) (0,1) (1,1) (1,1)
    0 1 1 255     1 1 1 3

    confusion (rows: label)   IoU = TP / (row + column - TP)
    1 1 1 0                   sky   1 / (3 + 1 - 1) = 1/3
    0 4 0 0                   road  4 / (4 + 5 - 4) = 4/5
    0 0 0 0                   car   0 / (0 + 1 - 0) = 0   (in no label, predicted once)
    0 0 0 0                   bike  0 / 0: absent (predicted only on an ignored pixel)

    mean IoU = (1/3 + 4/5 + 0) / 3 = 17/45 (with bike as 0 it would be 17/60)
"""

import json
import os

import keras
import numpy as np
from PIL import Image

from ema_keras.data.voc import VOCExample
from ema_keras.inference.evaluation import EvaluationResult, evaluate
from ema_keras.metrics import SegmentationMeanIoU

NAMES = ["sky", "road", "car", "bike"]
LABELS = np.array([[0, 0, 1, 1], [0, 1, 1, 255]], np.uint8)
PREDICTIONS = np.array([[0, 2, 1, 1], [1, 1, 1, 3]])
CONFUSION = np.array([[1, 1, 1, 0], [0, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
IOU = [1 / 3, 4 / 5, 0.0]
MEAN_IOU = 17 / 45


def _logits(predictions):
    return (np.eye(len(NAMES), dtype="float32")[predictions] * 10)[None]


def test_metric_leaves_the_absent_class_out_of_the_mean():
    metric = SegmentationMeanIoU(len(NAMES))
    # In two updates, one row each: the counts add up.
    for row in range(2):
        metric.update_state(LABELS[None, row : row + 1], _logits(PREDICTIONS[row : row + 1]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(metric.confusion_matrix), CONFUSION)
    per_class = metric.per_class_iou()
    np.testing.assert_allclose(per_class[:3], IOU, rtol=1e-12)
    assert np.isnan(per_class[3])
    assert metric.absent_classes() == [3]
    np.testing.assert_allclose(float(metric.result()), MEAN_IOU, rtol=1e-6)
    metric.reset_state()
    assert metric.absent_classes() == [0, 1, 2, 3]


def _write_example(folder):
    os.makedirs(folder)
    image_path = os.path.join(folder, "a.png")
    label_path = os.path.join(folder, "a_label.png")
    Image.fromarray(np.full((2, 4, 3), 128, np.uint8)).save(image_path)
    Image.fromarray(LABELS, mode="L").save(label_path)
    return [VOCExample("a", image_path, label_path)]


def test_evaluate_reports_the_absent_class(tmp_path):
    examples = _write_example(str(tmp_path / "split"))

    def model(images, training=False):
        assert tuple(images.shape[1:3]) == LABELS.shape
        return keras.ops.convert_to_tensor(_logits(PREDICTIONS))

    result = evaluate(model, examples, num_classes=4, class_names=NAMES)
    assert result.num_images == 1
    np.testing.assert_allclose(result.mean_iou, MEAN_IOU, rtol=1e-6)
    np.testing.assert_allclose(result.per_class_iou[:3], IOU, rtol=1e-6)
    assert result.absent_classes == ["bike"]

    report = result.to_json()
    json.dumps(report, allow_nan=False)
    assert report["absent_classes"] == ["bike"]
    assert report["per_class_iou"]["bike"] is None
    assert report["per_class_iou"]["car"] == 0.0
    np.testing.assert_allclose(report["per_class_iou"]["road"], 0.8, rtol=1e-6)

    assert result.to_markdown().split("\n") == [
        "| class | IoU (%) |",
        "|---|---|",
        "| sky | 33.33 |",
        "| road | 80.00 |",
        "| car | 0.00 |",
        "| bike | absent |",
        "| **mean** | **37.78** |",
        "",
        "Absent (in no label of the split, never predicted; not in the mean): bike.",
    ]


def test_reports_without_absent_classes_have_no_absent_line():
    result = EvaluationResult(
        mean_iou=0.5, per_class_iou=[0.25, 0.75], class_names=["a", "b"], num_images=1,
        settings={},
    )
    assert result.absent_classes == []
    assert result.to_json()["absent_classes"] == []
    assert result.to_markdown().split("\n")[-1] == "| **mean** | **50.00** |"
