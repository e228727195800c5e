"""The class-weighted losses on another backend, run as a program (the test session is TF).

    KERAS_BACKEND=jax python -m tests.backends.loss_checks WORK_DIR

Computes the plain and OHEM cross-entropies with class weights on one fixed
random batch (`weighted_loss_case`, the same on every backend) and writes
them to WORK_DIR/weighted_losses_<backend>.json, with one line printed;
`tests/training/test_class_weights.py` compares them with TensorFlow's.
"""

import json
import os
import sys

import keras
import numpy as np

from ema_keras.losses import MaskedSparseCrossEntropy, OHEMCrossEntropy

CLASS_WEIGHTS = [0.5, 2.0, 1.0, 0.0, 3.5]


def weighted_loss_case():
    """(logits (2, 9, 8, 5) float32, labels (2, 9, 8) int32 with 255s, class weights)."""
    rng = np.random.default_rng(21)
    logits = (rng.normal(size=(2, 9, 8, 5)) * 2).astype("float32")
    labels = rng.integers(0, 5, size=(2, 9, 8)).astype("int32")
    labels[rng.random(labels.shape) < 0.25] = 255
    return logits, labels, CLASS_WEIGHTS


def weighted_loss_values():
    """{case: loss} on this process' backend for `weighted_loss_case`."""
    logits, labels, weights = weighted_loss_case()
    losses = {
        "plain": MaskedSparseCrossEntropy(class_weights=weights),
        "ohem": OHEMCrossEntropy(threshold=0.6, min_kept=50, class_weights=weights),
        "unweighted": MaskedSparseCrossEntropy(),
    }
    return {
        name: float(keras.ops.convert_to_numpy(loss(labels, logits)))
        for name, loss in losses.items()
    }


def check_weighted_losses(work_dir):
    values = weighted_loss_values()
    assert all(np.isfinite(list(values.values()))), values
    path = os.path.join(work_dir, f"weighted_losses_{keras.backend.backend()}.json")
    with open(path, "w") as handle:
        json.dump(values, handle)
    print(f"class-weighted losses on {keras.backend.backend()}: {values}")


if __name__ == "__main__":
    check_weighted_losses(sys.argv[1])
