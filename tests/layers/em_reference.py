"""The EM attention of EMANET.md in float64 NumPy: the reference every backend is checked against.

Plain NumPy, no Keras or TensorFlow, so the JAX checks (run in a subprocess on
another backend) share it with the TensorFlow tests.
"""

import numpy as np


def reference_em(inputs, bases, num_iterations=3, epsilon=1e-6):
    """Output (B, H, W, C) and per-image bases (B, C, K) of EM attention from (C, K) `bases`."""
    x = inputs.astype(np.float64).reshape(inputs.shape[0], -1, inputs.shape[-1])
    mu = np.broadcast_to(bases.astype(np.float64), (x.shape[0],) + bases.shape)
    for _ in range(num_iterations):
        logits = x @ mu
        logits = logits - logits.max(axis=-1, keepdims=True)
        z = np.exp(logits)
        z = z / z.sum(axis=-1, keepdims=True)
        z_normalized = z / (epsilon + z.sum(axis=1, keepdims=True))
        mu = np.transpose(x, (0, 2, 1)) @ z_normalized
        mu = mu / (epsilon + np.linalg.norm(mu, axis=1, keepdims=True))
    reconstruction = z @ np.transpose(mu, (0, 2, 1))
    return reconstruction.reshape(inputs.shape), mu


def reference_update(bases, per_image_bases, momentum=0.9, normalize=False, epsilon=1e-6):
    """The moving-average update of the shared bases by the batch mean of `per_image_bases`."""
    average = per_image_bases.mean(axis=0)
    if normalize:
        average = average / (epsilon + np.linalg.norm(average, axis=0, keepdims=True))
    return momentum * bases + (1.0 - momentum) * average
