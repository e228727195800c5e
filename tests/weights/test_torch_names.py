"""The official / ImageNet key names -> Keras names, on NumPy arrays (no torch needed)."""

import numpy as np
import pytest

from ema_keras.weights import torch_names
from ema_keras.weights.loading import depth_name, weights_block_counts


def _official_keys(block_counts=(3, 4, 23, 3), num_classes=21):
    state = {"extractor.0.0.weight": np.ones((64, 3, 3, 3)), "emau.mu": np.ones((1, 512, 64))}
    for stage, blocks in enumerate(block_counts):
        for block in range(blocks):
            state[f"extractor.{stage + 4}.{block}.conv2.weight"] = np.ones((1, 1, 1, 1))
    state["fc2.weight"] = np.ones((num_classes, 256, 1, 1))
    return state


def test_official_names_and_layouts():
    state = {
        "extractor.0.0.weight": np.arange(2 * 3 * 3 * 3).reshape(2, 3, 3, 3),
        "extractor.0.4.running_var": np.ones(2),
        "extractor.0.4.num_batches_tracked": np.array(3),
        "extractor.1.bias": np.ones(4),
        "extractor.6.22.bn3.running_mean": np.zeros(8),
        "extractor.7.0.downsample.0.weight": np.ones((8, 4, 1, 1)),
        "extractor.7.0.downsample.1.weight": np.ones(8),
        "fc0.conv.weight": np.ones((5, 8, 3, 3)),
        "emau.mu": np.arange(10).reshape(1, 5, 2),
        "emau.conv1.bias": np.ones(5),
        "emau.conv2.1.running_var": np.ones(5),
        "fc1.0.bn.weight": np.ones(3),
        "fc2.bias": np.ones(21),
    }
    weights, unknown, dropped = torch_names.to_keras_names(state)
    assert unknown == [] and dropped == []
    flat = {
        f"{layer}/{name}": value
        for layer, variables in weights.items()
        for name, value in variables.items()
    }
    assert sorted(flat) == sorted([
        "conv1_1_conv/kernel",
        "conv1_2_bn/moving_variance",
        "conv1_bn/beta",
        "conv4_block23_3_bn/moving_mean",
        "conv5_block1_0_conv/kernel",
        "conv5_block1_0_bn/gamma",
        "pre_ema_conv/kernel",
        "ema_unit/em_attention/bases",
        "ema_unit/input_bias",
        "ema_unit/output_norm/moving_variance",
        "post_ema_bn/gamma",
        "classifier_conv/bias",
    ])
    # (out, in, kh, kw) -> (kh, kw, in, out); (1, C, K) -> (C, K).
    np.testing.assert_array_equal(
        flat["conv1_1_conv/kernel"], state["extractor.0.0.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(flat["ema_unit/em_attention/bases"], state["emau.mu"][0])
    assert flat["conv1_1_conv/kernel"].dtype == np.float32


def test_backbone_layouts_drop_the_classifier():
    deep = {"conv1.0.weight": np.ones((2, 3, 3, 3)), "conv1.4.bias": np.ones(2),
            "bn1.weight": np.ones(4), "layer2.1.conv1.weight": np.ones((2, 4, 1, 1)),
            "fc.weight": np.ones((1000, 2048)), "fc.bias": np.ones(1000)}
    assert torch_names.detect_layout(deep) == "deep_stem"
    weights, unknown, dropped = torch_names.to_keras_names(deep)
    assert sorted(weights) == ["conv1_1_conv", "conv1_2_bn", "conv1_bn", "conv3_block2_1_conv"]
    assert dropped == ["fc.bias", "fc.weight"] and unknown == []

    torchvision = {"conv1.weight": np.ones((64, 3, 7, 7)), "layer4.2.bn2.weight": np.ones(2)}
    assert torch_names.detect_layout(torchvision) == "torchvision"
    weights, _, _ = torch_names.to_keras_names(torchvision)
    assert sorted(weights) == ["conv1_conv", "conv5_block3_2_bn"]
    assert weights["conv1_conv"]["kernel"].shape == (7, 7, 3, 64)


def test_unknown_keys_are_returned():
    state = _official_keys((1, 1, 1, 1))
    state["emau.conv3.weight"] = np.ones(1)
    state["extractor.4.0.se.fc.weight"] = np.ones(1)
    _, unknown, _ = torch_names.to_keras_names(state)
    assert unknown == ["emau.conv3.weight", "extractor.4.0.se.fc.weight"]
    with pytest.raises(ValueError, match="Not an EMANet or ResNet state dict"):
        torch_names.detect_layout({"encoder.weight": np.ones(1)})


@pytest.mark.parametrize(
    "depth, counts", [(50, [3, 4, 6, 3]), (101, [3, 4, 23, 3]), (152, [3, 8, 36, 3])]
)
def test_depth_from_keys(depth, counts):
    state = _official_keys(counts)
    assert torch_names.block_counts(state) == counts
    assert weights_block_counts(torch_names.to_keras_names(state)[0]) == counts
    assert depth_name(counts) == f"ResNet-{depth}"
    assert depth_name([1, 1, 1, 1]) == "a ResNet with blocks [1, 1, 1, 1]"
