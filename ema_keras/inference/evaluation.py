"""Scoring a segmenter on a split: mIoU and per-class IoU at the original size.

A class with no pixel in the split's labels that the model never predicts
either is absent: it has no IoU (0/0), the reports say "absent" (markdown) or
null and list it in `absent_classes` (JSON), and the mean runs over the other
classes. A class in no label but predicted somewhere keeps IoU 0: those
pixels are false positives.
"""

import contextlib
import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

from ema_keras.data import pipeline
from ema_keras.data.voc import IGNORE_LABEL, VOC_CLASSES
from ema_keras.inference.multi_scale import predict_probabilities


@dataclasses.dataclass
class EvaluationResult:
    mean_iou: float  # over the classes that are not absent
    per_class_iou: Sequence[float]  # NaN for absent classes (in no label and no prediction)
    class_names: Sequence[str]
    num_images: int
    settings: dict
    # Pixels of true class i predicted as j, int64 (classes, classes): what replicas and
    # workers add up, so a distributed evaluation equals the one-device one exactly.
    confusion_matrix: Optional[np.ndarray] = None

    @property
    def absent_classes(self):
        """Names of the classes in no label of the split and never predicted."""
        return [name for name, iou in zip(self.class_names, self.per_class_iou) if math.isnan(iou)]

    def to_json(self):
        return {
            "mean_iou": self.mean_iou,
            "num_images": self.num_images,
            "settings": self.settings,
            "per_class_iou": {
                name: (None if math.isnan(iou) else iou)
                for name, iou in zip(self.class_names, self.per_class_iou)
            },
            "absent_classes": self.absent_classes,
            **(
                {}
                if self.confusion_matrix is None
                else {"confusion_matrix": np.asarray(self.confusion_matrix).tolist()}
            ),
        }

    def to_markdown(self):
        lines = ["| class | IoU (%) |", "|---|---|"]
        for name, iou in zip(self.class_names, self.per_class_iou):
            lines.append(f"| {name} | {'absent' if math.isnan(iou) else f'{100 * iou:.2f}'} |")
        lines.append(f"| **mean** | **{100 * self.mean_iou:.2f}** |")
        absent = self.absent_classes
        if absent:
            lines += [
                "",
                f"Absent (in no label of the split, never predicted; not in the mean): "
                f"{', '.join(absent)}.",
            ]
        return "\n".join(lines)


def image_confusion(label, probabilities, num_classes):
    """Pixels of true class i predicted as j in one image (or batch), int64 (classes, classes).

    `label` (..., H, W) holds class ids, `probabilities` (..., H, W, classes)
    anything whose argmax is the prediction; pixels labelled 255 (or outside
    0..num_classes-1) are not counted, as `ema_keras.metrics.SegmentationMeanIoU`
    does.
    """
    label = np.asarray(label).reshape(-1).astype(np.int64)
    predicted = np.asarray(probabilities).argmax(-1).reshape(-1).astype(np.int64)
    valid = (label != IGNORE_LABEL) & (label >= 0) & (label < num_classes)
    counts = np.bincount(
        label[valid] * num_classes + predicted[valid], minlength=num_classes * num_classes
    )
    return counts.reshape(num_classes, num_classes)


def score_examples(
    model,
    examples,
    *,
    num_classes,
    scales=(1.0,),
    flip=False,
    window=None,
    stride=None,
    pad_to=None,
    input_context=None,
    predict_scope=contextlib.nullcontext,
):
    """(confusion matrix int64 (classes, classes), images scored) of `model` on `examples`.

    Each image is predicted whole, one at a time (`predict_probabilities`),
    inside `predict_scope()` (a replica's device; the images are read
    outside it, on the host); `input_context` (a `tf.distribute.InputContext`)
    keeps only its share of the images, read from disk by this share alone.
    """
    matrix = np.zeros((num_classes, num_classes), np.int64)
    num_images = 0
    batch_size = 1 if input_context is None else input_context.num_replicas_in_sync
    for image, label in pipeline.eval_dataset(
        examples, batch_size=batch_size, pad_to=pad_to, num_classes=num_classes,
        input_context=input_context,
    ):
        with predict_scope():
            probabilities = predict_probabilities(
                model, image, scales=scales, flip=flip, window=window, stride=stride
            )
        matrix += image_confusion(label, probabilities, num_classes)
        num_images += 1
    return matrix, num_images


def intersection_over_union(matrix):
    """(mean IoU over the classes present, per-class IoU with NaN for absent classes)."""
    matrix = np.asarray(matrix, np.float64)
    true_positives = np.diagonal(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positives
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.where(union > 0, true_positives / union, np.nan)
    present = union > 0
    mean = per_class[present].sum() / max(int(present.sum()), 1)
    return float(np.float32(mean)), [float(value) for value in per_class]


def evaluation_result(matrix, num_images, *, class_names=None, settings):
    """The `EvaluationResult` of an accumulated confusion matrix."""
    num_classes = len(matrix)
    if class_names is None:
        class_names = VOC_CLASSES if num_classes == len(VOC_CLASSES) else [
            f"class_{i}" for i in range(num_classes)
        ]
    mean_iou, per_class_iou = intersection_over_union(matrix)
    return EvaluationResult(
        mean_iou=mean_iou,
        per_class_iou=per_class_iou,
        class_names=list(class_names),
        num_images=int(num_images),
        settings=settings,
        confusion_matrix=np.asarray(matrix, np.int64),
    )


def evaluation_settings(scales, flip, window, stride, pad_to):
    """What an `EvaluationResult` records of how it was scored."""
    return {"scales": list(scales), "flip": flip, "window": window, "stride": stride,
            "pad_to": pad_to}


def evaluate(
    model,
    examples,
    *,
    num_classes=21,
    scales=(1.0,),
    flip=False,
    window=None,
    stride=None,
    pad_to=None,
    class_names=None,
):
    """Runs `model` on every example at its own size and accumulates the IoU.

    `examples` is anything `ema_keras.data.pipeline.eval_dataset` reads (a
    list of VOCExample, a TFRecord glob). Images are neither padded nor
    resized before scoring: predictions are made at (or resized back to) each
    image's size, and pixels labelled 255 are ignored. `pad_to=(H, W)` (or
    an int) instead pads every image bottom/right with the mean (label 255)
    to that size first, the protocol of the validation during training
    (`TrainConfig.eval_pad_size`): the model then sees the padding too, so
    the score differs slightly from the one at each image's own size. A label holding other
    ids than 0..num_classes-1 and 255 stops the evaluation with an error
    naming its file, rather than having those pixels silently left out
    (`ema_keras.data.preflight_check` finds them all before a run). On
    several devices or machines: `ema_keras.inference.distributed_evaluation`.
    """
    matrix, num_images = score_examples(
        model, examples, num_classes=num_classes, scales=scales, flip=flip, window=window,
        stride=stride, pad_to=pad_to,
    )
    return evaluation_result(
        matrix, num_images, class_names=class_names,
        settings=evaluation_settings(scales, flip, window, stride, pad_to),
    )
