"""Mean intersection-over-union from an accumulated confusion matrix."""

import keras
import numpy as np
from keras import ops

from ema_keras.data.voc import IGNORE_LABEL
from ema_keras.serialization import PACKAGE


def _count_dtype():
    """float64 where the backend has it: JAX only with `jax_enable_x64` (else float32)."""
    if keras.backend.backend() == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SegmentationMeanIoU(keras.metrics.Metric):
    """Mean IoU over classes, accumulated as a (classes x classes) confusion matrix.

    Takes integer labels (B, H, W[, 1]) and logits or probabilities
    (B, H, W, classes); pixels labelled `ignore_label` are not counted. The
    matrix is a sum-aggregated metric variable, so under tf.distribute the
    replicas' and workers' counts add up before the result is read.

    The mean runs over the classes that occur in the labels or the predictions
    (union > 0), as the VOC evaluation does. A class in neither is absent
    (`absent_classes()`): `per_class_iou()` gives it NaN and the mean leaves it
    out (mmsegmentation's nanmean, the same number); a class predicted but in
    no label is present, with IoU 0 (its pixels are false positives).

    The counts are float64 (exact to 2^53 pixels) except on JAX, which holds
    them in float32 unless `jax_enable_x64` is set: exact to 2^24 pixels per
    cell, beyond that each added batch rounds by at most 6e-8 relative.
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL, name="mean_iou", **kwargs):
        super().__init__(name=name, **kwargs)
        if int(num_classes) < 2:
            raise ValueError(f"`num_classes` must be >= 2, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.confusion_matrix = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype=_count_dtype(),
            aggregation="sum",
            name="confusion_matrix",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, axis=-1)
        y_pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        y_true = ops.reshape(y_true, (-1,))
        y_pred = ops.reshape(y_pred, (-1,))
        valid = ops.logical_and(
            ops.not_equal(y_true, self.ignore_label),
            ops.logical_and(ops.greater_equal(y_true, 0), ops.less(y_true, self.num_classes)),
        )
        dtype = self.confusion_matrix.dtype
        weights = ops.cast(valid, dtype)
        if sample_weight is not None:
            weights = weights * ops.reshape(ops.cast(sample_weight, dtype), (-1,))
        pair_index = ops.where(valid, y_true * self.num_classes + y_pred, 0)
        counts = ops.segment_sum(weights, pair_index, num_segments=self.num_classes**2)
        self.confusion_matrix.assign_add(
            ops.reshape(counts, (self.num_classes, self.num_classes))
        )

    def _iou(self):
        matrix = ops.convert_to_tensor(self.confusion_matrix)
        true_positives = ops.diagonal(matrix)
        union = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1) - true_positives
        return true_positives, union

    def result(self):
        true_positives, union = self._iou()
        present = ops.cast(ops.greater(union, 0), union.dtype)
        iou = true_positives / ops.maximum(union, 1.0)
        return ops.cast(ops.sum(iou * present) / ops.maximum(ops.sum(present), 1.0), "float32")

    def per_class_iou(self):
        """NumPy array (num_classes,), NaN for classes absent from labels and predictions."""
        true_positives, union = (ops.convert_to_numpy(t) for t in self._iou())
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, true_positives / union, np.nan)

    def absent_classes(self):
        """The ids (a list) of the classes in no label and no prediction so far."""
        _, union = self._iou()
        return [int(i) for i in np.flatnonzero(ops.convert_to_numpy(union) == 0)]

    def reset_state(self):
        matrix = self.confusion_matrix
        self.confusion_matrix.assign(ops.zeros(matrix.shape, matrix.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
        }
