"""Segmentation losses that ignore the VOC border label (255).

Averaging: each replica averages the loss over the valid (non-ignored) pixels
of its own batch, and the gradients of the replicas are averaged. This is what
the official PyTorch code does under DistributedDataParallel
(`CrossEntropyLoss(ignore_index=255)` per GPU, gradients all-reduced), so a
replica's images count by their valid pixels, not one vote per image.

Class weights (`class_weights=[w_0, ..., w_{K-1}]`, `--class_weights`) weight
each pixel's cross-entropy by the weight of its true class and divide by the
sum of those weights, as `torch.nn.CrossEntropyLoss(weight=w, ignore_index=255)`
does: sum_i w[y_i] * nll_i / sum_i w[y_i] over the valid (for OHEM: kept) pixels.
"""

import math

import keras
from keras import ops

from ema_keras.data.voc import IGNORE_LABEL
from ema_keras.serialization import PACKAGE

# Weight of the auxiliary FCN head's loss in the official code (EMANET.md);
# `EMANetImageSegmenter.compile` and TrainConfig's default read it.
AUX_LOSS_WEIGHT = 0.4


def _flatten_valid(y_true, y_pred, ignore_label):
    """(B, H, W[, 1]) labels and (B, H, W, classes) logits -> per-pixel terms."""
    y_true = ops.cast(y_true, "int32")
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    valid = ops.not_equal(y_true, ignore_label)
    safe_labels = ops.where(valid, y_true, ops.zeros_like(y_true))
    logits = ops.cast(y_pred, "float32")
    pixel_loss = keras.losses.sparse_categorical_crossentropy(
        safe_labels, logits, from_logits=True
    )
    return pixel_loss, ops.cast(valid, "float32"), logits, safe_labels


def _per_image_share(pixel_loss, weights):
    """Per-image values whose batch mean is sum(weights * loss) / sum(weights).

    Keras reduces a loss by its mean over the batch; scaling each image's sum by
    B / (total weight) turns that mean into the mean over the selected pixels.
    """
    batch = ops.cast(ops.shape(pixel_loss)[0], "float32")
    per_image = ops.sum(pixel_loss * weights, axis=(1, 2))
    total = ops.sum(weights)
    # Not max(total, 1): class-weighted totals may lie below 1. Unweighted ones
    # are pixel counts, for which both guards give the same value.
    return per_image * batch / ops.where(total > 0.0, total, ops.ones_like(total))


def _checked_class_weights(class_weights):
    """None, or the weights as a tuple of floats: finite, >= 0, one of them > 0."""
    if class_weights is None:
        return None
    weights = tuple(float(w) for w in class_weights)
    if not weights or not all(math.isfinite(w) and w >= 0.0 for w in weights):
        raise ValueError(f"`class_weights` must be finite and >= 0, got {class_weights}.")
    if not any(weights):
        raise ValueError("`class_weights` must give at least one class a weight > 0.")
    return weights


def _pixel_weights(valid, labels, logits, class_weights):
    """`valid`, times the weight of each pixel's true class when there are class weights."""
    if class_weights is None:
        return valid
    num_classes = logits.shape[-1]
    if num_classes is not None and num_classes != len(class_weights):
        raise ValueError(
            f"{len(class_weights)} class weights for logits of {num_classes} classes."
        )
    table = ops.convert_to_tensor(class_weights, dtype="float32")
    return valid * ops.take(table, labels)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedSparseCrossEntropy(keras.losses.Loss):
    """Cross-entropy from logits, averaged over pixels whose label != ignore_label."""

    def __init__(
        self,
        ignore_label=IGNORE_LABEL,
        class_weights=None,
        name="masked_cross_entropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.ignore_label = int(ignore_label)
        self.class_weights = _checked_class_weights(class_weights)

    def call(self, y_true, y_pred):
        pixel_loss, valid, logits, labels = _flatten_valid(y_true, y_pred, self.ignore_label)
        weights = _pixel_weights(valid, labels, logits, self.class_weights)
        return _per_image_share(pixel_loss, weights)

    def get_config(self):
        return {
            **super().get_config(),
            "ignore_label": self.ignore_label,
            "class_weights": None if self.class_weights is None else list(self.class_weights),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class OHEMCrossEntropy(keras.losses.Loss):
    """Online hard example mining over pixels (as in mmsegmentation's sampler).

    Keeps the valid pixels whose predicted probability of the true class is
    below `threshold`, and at least the `min_kept` hardest ones of the batch,
    then averages the cross-entropy over the kept pixels. Class weights leave
    the selection alone (it is by probability) and weight the kept pixels'
    losses, as for MaskedSparseCrossEntropy.
    """

    def __init__(
        self,
        threshold=0.7,
        min_kept=100_000,
        ignore_label=IGNORE_LABEL,
        class_weights=None,
        name="ohem_cross_entropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if not 0.0 < float(threshold) <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1], got {threshold}.")
        if int(min_kept) < 1:
            raise ValueError(f"`min_kept` must be >= 1, got {min_kept}.")
        self.threshold = float(threshold)
        self.min_kept = int(min_kept)
        self.ignore_label = int(ignore_label)
        self.class_weights = _checked_class_weights(class_weights)

    def call(self, y_true, y_pred):
        pixel_loss, valid, logits, labels = _flatten_valid(y_true, y_pred, self.ignore_label)
        num_classes = ops.shape(logits)[-1]
        true_probability = ops.sum(
            ops.softmax(logits, axis=-1) * ops.one_hot(labels, num_classes), axis=-1
        )
        # Ignored pixels get probability 2 so that they sort after every valid one.
        ranked = ops.where(valid > 0, true_probability, 2.0 * ops.ones_like(true_probability))
        flat = ops.sort(ops.reshape(ranked, (-1,)))
        num_valid = ops.cast(ops.sum(valid), "int32")
        kth = ops.minimum(ops.minimum(self.min_kept, num_valid), ops.shape(flat)[0]) - 1
        kth_probability = ops.take(flat, ops.maximum(kth, 0))
        cutoff = ops.maximum(kth_probability, self.threshold)
        kept = valid * ops.cast(ops.less_equal(true_probability, cutoff), "float32")
        weights = _pixel_weights(kept, labels, logits, self.class_weights)
        return _per_image_share(pixel_loss, ops.stop_gradient(weights))

    def get_config(self):
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "min_kept": self.min_kept,
            "ignore_label": self.ignore_label,
            "class_weights": None if self.class_weights is None else list(self.class_weights),
        }


# Channel-wise distillation of segmentation logits (Shu et al., ICCV 2021) at the
# settings of CIRKD's logit runs (winycg/CIRKD: temperature 4, weight 3), the source of
# the DeepLabV3-MobileNetV2 figures in issue 23; mmrazor's PSPNet config uses 1 and 5.
DISTILL_TEMPERATURE = 4.0
DISTILL_WEIGHT = 3.0


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelWiseDistillation(keras.losses.Loss):
    """Channel-wise distillation (Shu et al., ICCV 2021): a teacher's logits taught to a student.

    `y_true` holds the teacher's logits, `y_pred` the student's, both
    (B, H, W, C). Each channel, divided by `temperature`, becomes a
    distribution over the H x W positions by a softmax; the loss is
    KL(teacher || student) of those distributions summed over the positions,
    averaged over the channels and the batch, times `temperature**2` and
    `weight`. Every position counts: there are no labels to ignore.
    """

    def __init__(
        self,
        temperature=DISTILL_TEMPERATURE,
        weight=DISTILL_WEIGHT,
        name="channel_wise_distillation",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if not (math.isfinite(float(temperature)) and float(temperature) > 0.0):
            raise ValueError(f"`temperature` must be finite and > 0, got {temperature}.")
        if not (math.isfinite(float(weight)) and float(weight) >= 0.0):
            raise ValueError(f"`weight` must be finite and >= 0, got {weight}.")
        self.temperature = float(temperature)
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        teacher = _spatial_log_softmax(ops.cast(y_true, "float32") / self.temperature)
        student = _spatial_log_softmax(ops.cast(y_pred, "float32") / self.temperature)
        divergence = ops.sum(ops.exp(teacher) * (teacher - student), axis=(1, 2))  # (B, C)
        # One value per image; Keras' reduction averages them over the batch.
        return ops.mean(divergence, axis=-1) * (self.temperature**2 * self.weight)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "weight": self.weight}


def _spatial_log_softmax(logits):
    """log softmax of (B, H, W, C) logits over H and W, for each image and channel."""
    return logits - ops.logsumexp(logits, axis=(1, 2), keepdims=True)
