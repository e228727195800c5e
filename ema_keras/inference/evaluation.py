"""Scoring a segmenter on a split: mIoU and per-class IoU at the original size.

A class with no pixel in the split's labels that the model never predicts
either is absent: it has no IoU (0/0), the reports say "absent" (markdown) or
null and list it in `absent_classes` (JSON), and the mean runs over the other
classes. A class in no label but predicted somewhere keeps IoU 0: those
pixels are false positives.
"""

import dataclasses
import math
from typing import Sequence

import numpy as np

from ema_keras.data import pipeline
from ema_keras.data.voc import VOC_CLASSES
from ema_keras.inference.multi_scale import predict_probabilities
from ema_keras.metrics import SegmentationMeanIoU


@dataclasses.dataclass
class EvaluationResult:
    mean_iou: float  # over the classes that are not absent
    per_class_iou: Sequence[float]  # NaN for absent classes (in no label and no prediction)
    class_names: Sequence[str]
    num_images: int
    settings: dict

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
    (`ema_keras.data.preflight_check` finds them all before a run).
    """
    metric = SegmentationMeanIoU(num_classes)
    num_images = 0
    for image, label in pipeline.eval_dataset(
        examples, batch_size=1, pad_to=pad_to, num_classes=num_classes
    ):
        probabilities = predict_probabilities(
            model, image, scales=scales, flip=flip, window=window, stride=stride
        )
        metric.update_state(label, probabilities)
        num_images += 1
    if class_names is None:
        class_names = VOC_CLASSES if num_classes == len(VOC_CLASSES) else [
            f"class_{i}" for i in range(num_classes)
        ]
    return EvaluationResult(
        mean_iou=float(metric.result()),
        per_class_iou=[float(v) for v in np.asarray(metric.per_class_iou())],
        class_names=list(class_names),
        num_images=num_images,
        settings={
            "scales": list(scales),
            "flip": flip,
            "window": window,
            "stride": stride,
            "pad_to": pad_to,
        },
    )
