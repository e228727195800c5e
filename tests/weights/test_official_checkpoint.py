"""The official EMANet checkpoint: converted, it computes what PyTorch computes."""

import numpy as np
import pytest

from ema_keras.weights import convert_official_checkpoint
from tests.weights.conftest import image, pixels, save_official_checkpoint, torch_forward

# max |logit difference| allowed between PyTorch and Keras, float32.
TOLERANCE = 1e-4


def _check_parity(reference, tmp_path, depth, output_stride):
    checkpoint = tmp_path / "official.pth"
    torch_model = save_official_checkpoint(
        reference, checkpoint, num_classes=21, depth=depth, output_stride=output_stride
    )
    model = convert_official_checkpoint(
        checkpoint, tmp_path / "converted.keras", output_stride=output_stride
    )
    assert model.image_encoder.depth == depth and model.num_classes == 21
    # EMA bases carried over: official (1, C, K) -> Keras (C, K).
    bases = model.backbone.get_layer("ema_unit").em_attention.bases.numpy()
    np.testing.assert_array_equal(bases, torch_model.emau.mu.numpy()[0])

    inputs = image(65)
    expected = torch_forward(torch_model, inputs)
    logits = model.predict(pixels(inputs), verbose=0)  # the same image, as raw pixels
    assert logits.shape == expected.shape == (1, 65, 65, 21)
    assert np.abs(expected).max() > 1.0  # logits of order one: the tolerance means something
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(logits.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("output_stride", [8, 16])
def test_resnet50_logits_match_pytorch(reference, tmp_path, output_stride):
    _check_parity(reference, tmp_path, 50, output_stride)


@pytest.mark.slow
@pytest.mark.parametrize("output_stride", [8, 16])
def test_resnet101_logits_match_pytorch(reference, tmp_path, output_stride):
    _check_parity(reference, tmp_path, 101, output_stride)
