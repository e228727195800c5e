"""The EM layer against the NumPy reference on the running backend, for the JAX and torch programs.

Output and bases update after one training call (with and without the
mmseg-style normalised average), and inference leaving the bases alone.
"""

import keras
import numpy as np

from ema_keras.layers import EMALayer
from tests.layers.em_reference import reference_em, reference_update


def check_em_layer_matches_reference():
    inputs = np.random.default_rng(0).normal(size=(4, 6, 5, 16)).astype("float32")
    for normalize_average in (False, True):
        layer = EMALayer(num_bases=8, normalize_average=normalize_average, seed=3)
        layer.build(inputs.shape)
        initial_bases = keras.ops.convert_to_numpy(layer.bases).copy()
        expected_output, per_image_bases = reference_em(inputs, initial_bases)
        output = keras.ops.convert_to_numpy(layer(inputs, training=True))
        np.testing.assert_allclose(output, expected_output, atol=1e-5)
        bases = keras.ops.convert_to_numpy(layer.bases)
        expected = reference_update(initial_bases, per_image_bases, normalize=normalize_average)
        np.testing.assert_allclose(bases, expected, atol=1e-5)
        assert np.abs(bases - initial_bases).max() > 1e-3  # the update did move them
        layer(inputs, training=False)  # inference leaves the bases alone
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.bases), bases)
    print("em layer equals the NumPy reference")
