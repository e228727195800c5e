import numpy as np
import pytest

from ema_keras.losses import MaskedSparseCrossEntropy, OHEMCrossEntropy


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _random_batch(seed=0, classes=5, ignore_fraction=0.3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(3, 6, 7, classes)).astype("float32") * 2
    labels = rng.integers(0, classes, size=(3, 6, 7)).astype("int32")
    labels[rng.random(labels.shape) < ignore_fraction] = 255
    return logits, labels


def _reference_pixel_losses(logits, labels):
    valid = labels != 255
    log_probs = _log_softmax(logits.astype(np.float64))
    safe = np.where(valid, labels, 0)
    losses = -np.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    return losses, valid


def test_masked_cross_entropy_is_mean_over_valid_pixels():
    logits, labels = _random_batch()
    losses, valid = _reference_pixel_losses(logits, labels)
    expected = losses[valid].mean()
    value = float(MaskedSparseCrossEntropy()(labels, logits))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # Labels with a trailing channel axis give the same value.
    value_4d = float(MaskedSparseCrossEntropy()(labels[..., None], logits))
    np.testing.assert_allclose(value_4d, expected, rtol=1e-5)


def test_ignored_pixels_do_not_change_the_loss():
    logits, labels = _random_batch(seed=1)
    changed = logits.copy()
    changed[labels == 255] = 1e4 * np.random.default_rng(2).normal(size=changed.shape[-1])
    np.testing.assert_allclose(
        float(MaskedSparseCrossEntropy()(labels, logits)),
        float(MaskedSparseCrossEntropy()(labels, changed)),
        rtol=1e-6,
    )


def test_all_ignored_gives_zero_not_nan():
    logits, labels = _random_batch(seed=3)
    labels[:] = 255
    assert float(MaskedSparseCrossEntropy()(labels, logits)) == 0.0


def test_ohem_keeps_hard_pixels_and_at_least_min_kept():
    logits, labels = _random_batch(seed=4)
    losses, valid = _reference_pixel_losses(logits, labels)
    true_probability = np.exp(-losses)
    threshold, min_kept = 0.7, 40
    probabilities = np.sort(true_probability[valid])
    cutoff = max(probabilities[min(min_kept, valid.sum()) - 1], threshold)
    kept = valid & (true_probability <= cutoff)
    expected = losses[kept].mean()
    value = float(OHEMCrossEntropy(threshold=threshold, min_kept=min_kept)(labels, logits))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert kept.sum() >= min_kept


def test_ohem_with_large_min_kept_equals_plain_mean():
    logits, labels = _random_batch(seed=5)
    np.testing.assert_allclose(
        float(OHEMCrossEntropy(threshold=0.01, min_kept=10**6)(labels, logits)),
        float(MaskedSparseCrossEntropy()(labels, logits)),
        rtol=1e-5,
    )


@pytest.mark.parametrize("kwargs", [{"threshold": 0.0}, {"min_kept": 0}])
def test_ohem_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        OHEMCrossEntropy(**kwargs)
