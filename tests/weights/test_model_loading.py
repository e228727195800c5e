"""Loading whole EMANets: converted `.keras` / `.weights.h5` files, the `.pth` itself, errors."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from ema_keras.models import DilatedResNet, EMANetBackbone, EMANetImageSegmenter
from ema_keras.weights import (
    WeightsMismatchError,
    convert_official_checkpoint,
    load_backbone_weights,
    load_model_weights,
)
from tests.weights.conftest import (
    ROOT,
    TINY_BLOCKS,
    TINY_HEAD,
    image,
    pixels,
    save_official_checkpoint,
    torch_forward,
)

NUM_CLASSES = 5
TOLERANCE = 1e-4


def tiny_emanet(
    num_classes=NUM_CLASSES, block_counts=TINY_BLOCKS, output_stride=8, head_channels=None
):
    encoder = DilatedResNet(block_counts=block_counts, output_stride=output_stride)
    backbone = EMANetBackbone(
        image_encoder=encoder,
        head_channels=head_channels or TINY_HEAD["head_channels"],
        classifier_channels=TINY_HEAD["classifier_channels"],
        ema_num_bases=TINY_HEAD["num_bases"],
    )
    return EMANetImageSegmenter(backbone=backbone, num_classes=num_classes)


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory):
    """(path of a tiny official checkpoint, its PyTorch model, that model's logits)."""
    path = tmp_path_factory.mktemp("official") / "tiny.pth"
    torch_model = save_official_checkpoint(
        reference, path, num_classes=NUM_CLASSES, block_counts=TINY_BLOCKS, **TINY_HEAD
    )
    return path, torch_model, torch_forward(torch_model, image(49))


def test_converted_keras_file_loads_with_load_model(checkpoint, tmp_path):
    path, _, expected = checkpoint
    convert_official_checkpoint(path, tmp_path / "tiny.keras")
    model = keras.models.load_model(tmp_path / "tiny.keras", compile=False)
    assert isinstance(model, EMANetImageSegmenter)
    assert model.image_encoder.block_counts == list(TINY_BLOCKS)
    head = model.backbone
    assert (model.num_classes, head.head_channels, head.ema_num_bases) == (NUM_CLASSES, 64, 8)
    logits = model.predict(pixels(image(49)), verbose=0)
    np.testing.assert_allclose(logits, expected, atol=TOLERANCE)


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5", ".pth"])
def test_load_model_weights_from_each_format(checkpoint, tmp_path, suffix):
    path, torch_model, expected = checkpoint
    source = path
    if suffix != ".pth":
        source = tmp_path / f"converted{suffix}"
        convert_official_checkpoint(path, source)
    model = tiny_emanet()
    assert load_model_weights(model, source) is model
    bases = model.backbone.get_layer("ema_unit").em_attention.bases.numpy()
    np.testing.assert_array_equal(bases, torch_model.emau.mu.numpy()[0])
    logits = model.predict(pixels(image(49)), verbose=0)
    np.testing.assert_allclose(logits, expected, atol=TOLERANCE)


def test_weights_load_into_another_output_stride(checkpoint, tmp_path, reference):
    """Output stride changes the dilations, not the weights: an OS8 file fits an OS16 model."""
    import torch

    path, torch_model, _ = checkpoint
    convert_official_checkpoint(path, tmp_path / "os8.keras", output_stride=8)
    model = load_model_weights(tiny_emanet(output_stride=16), tmp_path / "os8.keras")
    torch_os16 = reference.EMANet(
        NUM_CLASSES, block_counts=TINY_BLOCKS, output_stride=16, **TINY_HEAD
    ).eval()
    torch_os16.load_state_dict(torch.load(path, weights_only=True)["net"])
    expected = torch_forward(torch_os16, image(49))
    logits = model.predict(pixels(image(49)), verbose=0)
    np.testing.assert_allclose(logits, expected, atol=TOLERANCE)


def test_command_line_conversion_then_loading_without_torch(checkpoint, tmp_path):
    path, _, expected = checkpoint
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, os.path.join(ROOT, "export", "convert_pytorch.py")]
    command += ["--input", str(path), "--output", str(tmp_path / "tiny.keras")]
    command += ["--output_stride", "8"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.save(tmp_path / "image.npy", pixels(image(49)))  # raw pixels in
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now fails
        import keras, numpy as np
        import ema_keras
        from ema_keras import weights  # the loaders import without torch
        model = keras.models.load_model({str(tmp_path / "tiny.keras")!r}, compile=False)
        inputs = np.load({str(tmp_path / "image.npy")!r})
        np.save({str(tmp_path / "logits.npy")!r}, model.predict(inputs, verbose=0))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected, atol=TOLERANCE)


def test_loading_inside_a_distribution_strategy(checkpoint, tmp_path, mirrored_strategy):
    """The recipe builds the model in its strategy scope, then loads: both paths work there."""
    path, torch_model, _ = checkpoint
    convert_official_checkpoint(path, tmp_path / "tiny.keras")
    for source in (path, tmp_path / "tiny.keras"):
        with mirrored_strategy.scope():
            model = tiny_emanet()
            load_model_weights(model, source)
        bases = model.backbone.get_layer("ema_unit").em_attention.bases
        np.testing.assert_array_equal(bases.numpy(), torch_model.emau.mu.numpy()[0])
        kernel = model.get_layer("classifier_conv").kernel.numpy()
        expected = torch_model.fc2.weight.detach().numpy()[:, :, 0, 0].T
        np.testing.assert_array_equal(kernel[0, 0], expected)


def test_missing_torch_gives_install_hint(checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"ema-keras\[convert\]"):
        load_model_weights(tiny_emanet(), checkpoint[0])


# === Errors ===


def test_class_count_mismatch(checkpoint, tmp_path):
    path = checkpoint[0]
    with pytest.raises(WeightsMismatchError, match="has 5 classes but the model has 7"):
        load_model_weights(tiny_emanet(num_classes=7), path)
    convert_official_checkpoint(path, tmp_path / "tiny.keras")
    with pytest.raises(WeightsMismatchError, match="has 5 classes but the model has 7"):
        load_model_weights(tiny_emanet(num_classes=7), tmp_path / "tiny.keras")
    with pytest.raises(WeightsMismatchError, match="has 5 classes, not num_classes=21"):
        convert_official_checkpoint(path, tmp_path / "other.keras", num_classes=21)


def test_depth_mismatch(checkpoint, tmp_path):
    path = checkpoint[0]
    with pytest.raises(WeightsMismatchError, match=r"blocks \[1, 1, 1, 1\] but .* \[1, 1, 2, 1\]"):
        load_model_weights(tiny_emanet(block_counts=(1, 1, 2, 1)), path)
    with pytest.raises(WeightsMismatchError, match="not the requested depth=101"):
        convert_official_checkpoint(path, tmp_path / "r101.keras", depth=101)
    message = r"blocks \[1, 1, 1, 1\] but preset 'emanet_resnet50_os8_voc' is ResNet-50"
    with pytest.raises(WeightsMismatchError, match=message):
        convert_official_checkpoint(path, tmp_path / "r50.keras", preset="emanet_resnet50_os8_voc")


def test_missing_and_unknown_keys_are_listed(checkpoint, tmp_path):
    import torch

    path = checkpoint[0]
    contents = torch.load(path, weights_only=True)
    del contents["net"]["emau.conv1.bias"], contents["net"]["fc0.bn.running_var"]
    torch.save(contents, tmp_path / "missing.pth")
    with pytest.raises(WeightsMismatchError) as error:
        load_model_weights(tiny_emanet(), tmp_path / "missing.pth")
    assert "2 missing from the file" in str(error.value)
    assert "ema_unit/input_bias" in str(error.value)
    assert "pre_ema_bn/moving_variance" in str(error.value)

    contents = torch.load(path, weights_only=True)
    contents["net"]["emau.extra.weight"] = torch.zeros(3)
    torch.save(contents, tmp_path / "unknown.pth")
    message = "1 keys with no Keras counterpart: emau.extra.weight"
    with pytest.raises(WeightsMismatchError, match=message):
        convert_official_checkpoint(tmp_path / "unknown.pth", tmp_path / "unknown.keras")


def test_head_mismatch_lists_shapes(checkpoint):
    model = tiny_emanet(head_channels=32)
    message = r"pre_ema_conv/kernel: file \(3, 3, 2048, 64\), model \(3, 3, 2048, 32\)"
    with pytest.raises(WeightsMismatchError, match=message):
        load_model_weights(model, checkpoint[0])


def test_wrong_file_kinds(checkpoint, tmp_path):
    path = checkpoint[0]
    convert_official_checkpoint(path, tmp_path / "tiny.keras")
    backbone_file = tmp_path / "backbone.keras"
    DilatedResNet(block_counts=TINY_BLOCKS).save(backbone_file)
    with pytest.raises(WeightsMismatchError, match="load_backbone_weights"):
        load_model_weights(tiny_emanet(), backbone_file)
    with pytest.raises(TypeError, match="model.image_encoder"):
        load_backbone_weights(tiny_emanet(), backbone_file)
    with pytest.raises(TypeError, match="expects an EMANet segmenter"):
        load_model_weights(DilatedResNet(block_counts=TINY_BLOCKS), tmp_path / "tiny.keras")
    with pytest.raises(ValueError, match="Unknown weights file type: .*model.onnx"):
        load_model_weights(tiny_emanet(), tmp_path / "model.onnx")
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        load_model_weights(tiny_emanet(), tmp_path / "absent.keras")
    with pytest.raises(ValueError, match="must end with one of"):
        convert_official_checkpoint(path, tmp_path / "out.h5")
