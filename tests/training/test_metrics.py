import numpy as np
import pytest
import tensorflow as tf

from ema_keras.metrics import SegmentationMeanIoU

NUM_CLASSES = 4


def reference_iou(labels, predictions, num_classes=NUM_CLASSES):
    valid = labels != 255
    matrix = np.zeros((num_classes, num_classes))
    np.add.at(matrix, (labels[valid], predictions[valid]), 1)
    true_positives = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, true_positives / union, np.nan)
    return np.nanmean(per_class), per_class


def random_logits_and_labels(seed, batch=3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, 8, 9, NUM_CLASSES)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=(batch, 8, 9)).astype("int32")
    labels[rng.random(labels.shape) < 0.2] = 255
    return logits, labels


def test_mean_iou_matches_numpy_reference_over_batches():
    metric = SegmentationMeanIoU(NUM_CLASSES)
    all_logits, all_labels = [], []
    for seed in range(3):
        logits, labels = random_logits_and_labels(seed)
        metric.update_state(labels, logits)
        all_logits.append(logits)
        all_labels.append(labels)
    labels = np.concatenate(all_labels)
    predictions = np.concatenate(all_logits).argmax(-1)
    expected_mean, expected_per_class = reference_iou(labels, predictions)
    np.testing.assert_allclose(float(metric.result()), expected_mean, rtol=1e-6)
    np.testing.assert_allclose(metric.per_class_iou(), expected_per_class, rtol=1e-6)


def test_absent_classes_are_nan_and_excluded_from_the_mean():
    labels = np.zeros((1, 2, 2), "int32")
    labels[0, 0, 0] = 1
    logits = np.zeros((1, 2, 2, NUM_CLASSES), "float32")
    logits[..., 0] = 1.0  # predicts background everywhere
    metric = SegmentationMeanIoU(NUM_CLASSES)
    metric.update_state(labels, logits)
    per_class = metric.per_class_iou()
    np.testing.assert_allclose(per_class[:2], [0.75, 0.0])
    assert np.isnan(per_class[2:]).all()
    np.testing.assert_allclose(float(metric.result()), 0.375)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_mean_iou_accumulates_over_two_replicas(mirrored_strategy):
    per_replica = [random_logits_and_labels(10), random_logits_and_labels(11, batch=2)]
    with mirrored_strategy.scope():
        metric = SegmentationMeanIoU(NUM_CLASSES)

    def value_fn(index):
        return lambda context: tf.constant(per_replica[context.replica_id_in_sync_group][index])

    logits = mirrored_strategy.experimental_distribute_values_from_function(value_fn(0))
    labels = mirrored_strategy.experimental_distribute_values_from_function(value_fn(1))
    mirrored_strategy.run(tf.function(metric.update_state), args=(labels, logits))

    expected, _ = reference_iou(
        np.concatenate([p[1] for p in per_replica]),
        np.concatenate([p[0] for p in per_replica]).argmax(-1),
    )
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)


def test_rejects_single_class():
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMeanIoU(1)
