"""ImageNet backbones: keras.applications `.h5` files, deep-stem and torchvision ResNets."""

import h5py
import keras
import numpy as np
import pytest

from ema_keras.models import DilatedResNet
from ema_keras.weights import (
    WeightsMismatchError,
    convert_deep_stem_backbone,
    convert_official_checkpoint,
    convert_torchvision_resnet,
    load_backbone_weights,
)
from ema_keras.weights.layer_weights import named_layers
from tests.weights.conftest import (
    TINY_BLOCKS,
    TINY_HEAD,
    image,
    pixels,
    save_official_checkpoint,
    torch_forward,
)

BLOCKS = (2, 1, 1, 2)  # two blocks where it matters: block 2 has no shortcut, stage 4 multi-grid
TOLERANCE = 1e-4


def _file_weights(path):
    """{"layer/variable": array} of a legacy Keras `.h5`, read with h5py alone."""
    weights = {}
    with h5py.File(path, "r") as file:
        group = file["model_weights"] if "model_weights" in file else file
        for layer in group.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            for name in group[layer].attrs.get("weight_names", []):
                name = name.decode() if isinstance(name, bytes) else name
                weights[name.split(":")[0]] = np.asarray(group[layer][name])
    return weights


def _assert_backbone_holds(backbone, expected):
    """Every backbone variable equals the file's, and every file weight was used."""
    seen = set()
    for layer_name, layer in named_layers(backbone).items():
        for variable in layer.weights:
            key = f"{layer_name}/{variable.path.split('/')[-1]}"
            np.testing.assert_array_equal(variable.numpy(), expected[key], err_msg=key)
            seen.add(key)
    assert seen == {key for key in expected if not key.startswith("predictions")}


@pytest.fixture(scope="module")
def applications_file(tmp_path_factory):
    """keras.applications ResNet50 (no download) saved as its ImageNet `.h5` file is laid out.

    The downloaded `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5` is
    a legacy weights-only file whose weight names end in ":0"; both are
    reproduced.
    """
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(7)
    model = keras.applications.ResNet50(weights=None, include_top=False)
    # Random biases and BN statistics (zeros and ones when fresh), so that
    # loading them is checked too.
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(np.random.uniform(-0.1, 0.1, layer.bias.shape))
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.random.uniform(-1, 1, layer.moving_mean.shape))
            layer.moving_variance.assign(np.random.uniform(0.5, 2, layer.moving_variance.shape))
    path = tmp_path_factory.mktemp("applications") / "resnet50_notop.h5"
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)
        for layer in file.attrs["layer_names"]:
            group = file[layer]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            for name in names:
                group.move(name, name + ":0")
            if names:
                group.attrs["weight_names"] = [(name + ":0").encode() for name in names]
    return path


def test_keras_applications_h5_loads_by_layer_name(applications_file):
    backbone = DilatedResNet(depth=50, stem="standard", output_stride=8)
    assert load_backbone_weights(backbone, applications_file) is backbone
    _assert_backbone_holds(backbone, _file_weights(applications_file))


def test_keras_applications_whole_model_h5_with_classifier(tmp_path):
    model = keras.applications.ResNet50(weights=None, include_top=True)
    model.save(tmp_path / "resnet50_top.h5")  # legacy whole-model file: `model_weights` group
    backbone = DilatedResNet(depth=50, stem="standard", output_stride=16)
    load_backbone_weights(backbone, tmp_path / "resnet50_top.h5")  # `predictions` ignored
    _assert_backbone_holds(backbone, _file_weights(tmp_path / "resnet50_top.h5"))


def test_keras_applications_mismatches(applications_file):
    with pytest.raises(WeightsMismatchError, match=r"holds ResNet-50 but .* blocks \[1, 1, 1, 1\]"):
        tiny = DilatedResNet(block_counts=TINY_BLOCKS, stem="standard")
        load_backbone_weights(tiny, applications_file)
    with pytest.raises(WeightsMismatchError, match="standard stem but .* stem='deep'"):
        load_backbone_weights(DilatedResNet(depth=50, stem="deep"), applications_file)
    with pytest.raises(WeightsMismatchError, match="conv1_conv/bias"):
        load_backbone_weights(
            DilatedResNet(depth=50, stem="standard", use_conv_bias=False), applications_file
        )


def test_deep_stem_backbone_matches_pytorch(reference, tmp_path, output_stride=8):
    import torch

    torch.manual_seed(0)
    torch_model = reference.randomize_(
        reference.ResNet(block_counts=BLOCKS, stem="deep", output_stride=output_stride)
    ).eval()
    torch.save(torch_model.state_dict(), tmp_path / "resnet_deep.pth")
    convert_deep_stem_backbone(tmp_path / "resnet_deep.pth", tmp_path / "deep.keras")
    expected = torch_forward(torch_model, image(65), method="features")
    for source in ("deep.keras", "resnet_deep.pth"):  # converted, and read directly
        backbone = DilatedResNet(block_counts=BLOCKS, output_stride=output_stride)
        load_backbone_weights(backbone, tmp_path / source)
        features = backbone.predict(pixels(image(65)), verbose=0)["P5"]
        np.testing.assert_allclose(features, expected, rtol=0, atol=TOLERANCE)


def test_torchvision_resnet_matches_pytorch(reference, tmp_path):
    import torch

    torch.manual_seed(1)
    torch_model = reference.randomize_(
        reference.ResNet(block_counts=BLOCKS, stem="standard", output_stride=32)
    ).eval()
    torch.save(torch_model.state_dict(), tmp_path / "resnet_tv.pth")  # a bare state dict
    converted = convert_torchvision_resnet(tmp_path / "resnet_tv.pth", tmp_path / "tv.keras")
    assert not converted.use_conv_bias
    # The default standard-stem backbone has conv biases (keras.applications
    # layout): they are set to zero, which computes the same thing.
    backbone = DilatedResNet(block_counts=BLOCKS, stem="standard", output_stride=32)
    backbone.get_layer("conv1_conv").bias.assign(np.ones(64))
    load_backbone_weights(backbone, tmp_path / "tv.keras")
    np.testing.assert_array_equal(backbone.get_layer("conv1_conv").bias.numpy(), np.zeros(64))
    expected = torch_forward(torch_model, image(65), method="features")
    features = backbone.predict(pixels(image(65)), verbose=0)["P5"]
    np.testing.assert_allclose(features, expected, rtol=0, atol=TOLERANCE)

    with pytest.raises(WeightsMismatchError, match="standard stem but .* stem='deep'"):
        load_backbone_weights(DilatedResNet(block_counts=BLOCKS), tmp_path / "resnet_tv.pth")
    with pytest.raises(WeightsMismatchError, match="torchvision layout, not deep_stem"):
        convert_deep_stem_backbone(tmp_path / "resnet_tv.pth", tmp_path / "x.keras")


def test_backbone_from_official_checkpoint_and_emanet_file(reference, tmp_path):
    torch_model = save_official_checkpoint(
        reference, tmp_path / "official.pth", block_counts=TINY_BLOCKS, **TINY_HEAD
    )
    expected = torch_forward(torch_model.extractor, image(49))
    backbone = DilatedResNet(block_counts=TINY_BLOCKS)
    load_backbone_weights(backbone, tmp_path / "official.pth")  # the head is left out
    np.testing.assert_allclose(
        backbone.predict(pixels(image(49)), verbose=0)["P5"], expected, rtol=0, atol=TOLERANCE
    )
    model = convert_official_checkpoint(tmp_path / "official.pth", tmp_path / "emanet.keras")
    backbone = DilatedResNet(block_counts=TINY_BLOCKS, output_stride=16)
    load_backbone_weights(backbone, tmp_path / "emanet.keras")
    for ours, theirs in zip(backbone.weights, model.backbone.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
