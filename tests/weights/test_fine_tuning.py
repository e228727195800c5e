"""Fine-tuning a trained model to new classes: all but the classifiers loaded, exactly.

A source model of 21 classes gets random values in every variable (BatchNorm
statistics and EMA bases included), so "loaded" means "equal to the
source's", never "equal by chance to a fresh initialisation"; the target is
built with another seed, so its fresh weights differ from the source's too.
"""

import numpy as np
import pytest

from ema_keras.models import (
    DilatedResNet,
    EMANetBackbone,
    EMANetImageSegmenter,
    MobileEMANetBackbone,
    presets,
)
from ema_keras.optimizers import BIAS, DECAYED, parameter_groups
from ema_keras.training import trainer
from ema_keras.training.config import SettingsError, TrainConfig
from ema_keras.weights import (
    WeightsMismatchError,
    classifier_layers,
    load_fine_tuning_weights,
    load_model_weights,
)
from ema_keras.weights.layer_weights import model_weights
from tests.weights.conftest import TINY_BLOCKS, TINY_HEAD, save_official_checkpoint

IMAGE_SHAPE = (64, 64, 3)
MOBILE = "emanet_mobilenetv3_small_voc"


def tiny(num_classes, seed, **overrides):
    overrides.setdefault("image_shape", IMAGE_SHAPE)
    return EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo", num_classes=num_classes, seed=seed, **overrides
    )


def mobile(num_classes, seed):
    return EMANetImageSegmenter.from_preset(
        MOBILE, num_classes=num_classes, seed=seed, image_shape=IMAGE_SHAPE
    )


def randomised(model, seed=0):
    """`model` with every variable drawn from U(0.5, 1.5) (a valid BatchNorm variance too)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(variable.dtype))
    return model


def saved(model, path):
    if str(path).endswith(".keras"):
        model.save(path)
    else:
        model.save_weights(path)
    return path


def assert_fine_tuned(model, fresh, source, reinitialised):
    """Every weight is the source's, the re-initialised layers' are the fresh model's."""
    loaded, compared = model_weights(model), 0
    assert set(reinitialised) <= set(loaded)
    for layer, variables in loaded.items():
        expected = fresh[layer] if layer in reinitialised else source[layer]
        assert variables.keys() == expected.keys(), layer
        for name, value in variables.items():
            assert np.array_equal(value, expected[name]), f"{layer}/{name}"
            compared += 1
    for layer in reinitialised:
        kernel = loaded[layer]["kernel"]
        assert not np.array_equal(kernel, source[layer]["kernel"][..., : kernel.shape[-1]])
    assert compared > 30  # the whole model, not a few layers


@pytest.mark.parametrize(
    "suffix, aux_head", [(".keras", False), (".keras", True), (".weights.h5", True)]
)
def test_emanet_file_of_21_classes_into_3(tmp_path, suffix, aux_head):
    source = randomised(tiny(21, seed=1, aux_head=aux_head))
    path = saved(source, tmp_path / f"voc{suffix}")
    model = tiny(3, seed=2, aux_head=aux_head)
    fresh = model_weights(model)
    loaded = load_fine_tuning_weights(model, path)
    expected = ("classifier_conv", "aux_classifier_conv") if aux_head else ("classifier_conv",)
    assert loaded.reinitialised == classifier_layers(model) == expected
    assert (loaded.file_classes, loaded.model_classes) == (21, 3)
    assert loaded.message == (
        f"Fine-tuning: {', '.join(expected)} re-initialised (the file has 21 classes, the model "
        f"3); every other weight loaded from {path}."
    )
    assert_fine_tuned(model, fresh, model_weights(source), expected)


def test_a_file_of_0_1s_layout_fine_tunes_the_family(tmp_path):
    """0.1's EMANet (its head in the segmenter) into today's segmenter, by layer name."""
    from ema_keras.models import EMANet

    encoder = DilatedResNet(block_counts=[1, 1, 1, 1], width=8, image_shape=IMAGE_SHAPE)
    with pytest.warns(DeprecationWarning):
        old = EMANet(
            backbone=encoder, num_classes=21, head_channels=32, classifier_channels=32,
            ema_num_bases=8, image_shape=IMAGE_SHAPE, seed=1,
        )  # fmt: skip
    source = randomised(old)
    path = saved(source, tmp_path / "old.keras")
    model = tiny(3, seed=2)
    fresh = model_weights(model)
    loaded = load_fine_tuning_weights(model, path)
    assert loaded.reinitialised == ("classifier_conv",)
    assert_fine_tuned(model, fresh, model_weights(source), ("classifier_conv",))
    same = load_model_weights(tiny(21, seed=3), path)  # strictly, of its class count
    assert_fine_tuned(same, {}, model_weights(source), ())


def test_same_class_count_loads_everything(tmp_path):
    source = randomised(tiny(21, seed=1))
    path = saved(source, tmp_path / "voc.keras")
    model = tiny(21, seed=2)
    loaded = load_fine_tuning_weights(model, path)
    assert (loaded.reinitialised, loaded.message) == ((), None)
    assert_fine_tuned(model, {}, model_weights(source), ())


def test_mobile_emanet_file_into_3_classes(tmp_path):
    source = randomised(mobile(21, seed=1))
    path = saved(source, tmp_path / "mobile.keras")
    model = mobile(3, seed=2)
    fresh = model_weights(model)
    loaded = load_fine_tuning_weights(model, path)
    assert loaded.reinitialised == ("classifier_high", "classifier_low")
    assert_fine_tuned(model, fresh, model_weights(source), loaded.reinitialised)
    # The strict loader now takes mobile files of its own class count.
    same = load_model_weights(mobile(21, seed=3), path)
    assert_fine_tuned(same, {}, model_weights(source), ())


def test_build_model_fine_tunes_a_mobile_model_and_logs_one_line(tmp_path, monkeypatch):
    """`train_voc.py --recipe demo_mobile --weights <21-class .keras>` on 3 classes."""
    source = randomised(mobile(21, seed=1))
    path = saved(source, tmp_path / "mobile.keras")
    lines = []
    monkeypatch.setattr(trainer.logging, "info", lambda *args: lines.append(args[0] % args[1:]))
    config = TrainConfig(preset=MOBILE, num_classes=3, weights=str(path), seed=2)
    model = trainer.build_model(config)
    assert isinstance(model.backbone, MobileEMANetBackbone) and model.num_classes == 3
    assert lines == [
        "Fine-tuning: classifier_high, classifier_low re-initialised (the file has 21 classes, "
        f"the model 3); every other weight loaded from {path}."
    ]
    weights, source_weights = model_weights(model), model_weights(source)
    kept = {"classifier_high", "classifier_low"}
    assert len(weights) > 50 and weights.keys() == source_weights.keys()
    for layer in weights.keys() - kept:
        for name, value in source_weights[layer].items():
            assert np.array_equal(weights[layer][name], value), f"{layer}/{name}"
    assert {weights[layer]["kernel"].shape[-1] for layer in kept} == {3}


# === Refusals: nothing assigned ===


def _assert_refused(model, path, match):
    before = model_weights(model)
    with pytest.raises(WeightsMismatchError, match=match):
        load_fine_tuning_weights(model, path)
    after = model_weights(model)
    assert all(
        np.array_equal(after[layer][name], value)
        for layer, variables in before.items()
        for name, value in variables.items()
    )


def test_other_model_class_and_head_width_are_refused(tmp_path):
    emanet_file = saved(randomised(tiny(21, seed=1)), tmp_path / "emanet.keras")
    mobile_file = saved(randomised(mobile(21, seed=1)), tmp_path / "mobile.keras")
    _assert_refused(
        mobile(3, seed=2), emanet_file,
        "holds a dilated-ResNet EMANet but the model is a MobileNetV3 EMANet",
    )  # fmt: skip
    _assert_refused(
        tiny(3, seed=2), mobile_file,
        "holds a MobileNetV3 EMANet but the model is a dilated-ResNet EMANet",
    )  # fmt: skip
    narrow = tiny(3, seed=2, head_channels=16)
    message = r"pre_ema_conv/kernel: file \(3, 3, 256, 32\), model \(3, 3, 256, 16\)"
    _assert_refused(narrow, emanet_file, message)
    with pytest.raises(WeightsMismatchError) as error:
        load_fine_tuning_weights(tiny(3, seed=2, head_channels=16), emanet_file)
    assert "classifier_conv" not in str(error.value)  # the classifier is not a mismatch
    # An aux head the file lacks is missing weights, not a classifier to re-initialise.
    _assert_refused(tiny(3, seed=2, aux_head=True), emanet_file, "missing from the file: aux_")
    # The official checkpoints are ResNets: refused before the file is read.
    _assert_refused(mobile(3, seed=2), tmp_path / "absent.pth", "which a MobileEMANet cannot load")


def test_strict_loading_and_presets_still_refuse_another_class_count(tmp_path):
    """`load_model_weights` and `from_preset(load_weights=True)` never drop a classifier."""
    path = saved(randomised(tiny(21, seed=1)), tmp_path / "voc.keras")
    message = "has 21 classes but the model has 3: .*load_fine_tuning_weights"
    with pytest.raises(WeightsMismatchError, match=message):
        load_model_weights(tiny(3, seed=2), path)
    config = presets.get_preset("emanet_tiny_demo")
    with pytest.warns(DeprecationWarning):
        presets.register_preset(
            "test_tiny_with_weights", config, description="t", weights=str(path)
        )
    try:
        with pytest.raises(WeightsMismatchError, match="has 21 classes but the model has 3"):
            EMANetImageSegmenter.from_preset(
                "test_tiny_with_weights", num_classes=3, load_weights=True
            )
    finally:
        presets.unregister_preset("test_tiny_with_weights")


# === The official checkpoint ===


def test_official_checkpoint_of_21_classes_into_3(reference, tmp_path):
    path = tmp_path / "official.pth"
    save_official_checkpoint(reference, path, num_classes=21, block_counts=TINY_BLOCKS, **TINY_HEAD)

    def official_architecture(num_classes):
        backbone = EMANetBackbone(
            image_encoder=DilatedResNet(block_counts=TINY_BLOCKS),
            head_channels=TINY_HEAD["head_channels"],
            classifier_channels=TINY_HEAD["classifier_channels"],
            ema_num_bases=TINY_HEAD["num_bases"],
            seed=2,
        )
        return EMANetImageSegmenter(backbone=backbone, num_classes=num_classes, seed=2)

    source = model_weights(load_model_weights(official_architecture(21), path))
    model = official_architecture(3)
    fresh = model_weights(model)
    loaded = load_fine_tuning_weights(model, path)
    assert loaded.reinitialised == ("classifier_conv",)
    assert (loaded.file_classes, loaded.model_classes) == (21, 3)
    assert_fine_tuned(model, fresh, source, ("classifier_conv",))


# === --freeze_backbone ===


def test_freeze_backbone_trains_the_head_only(tmp_path):
    path = saved(randomised(tiny(21, seed=1)), tmp_path / "voc.keras")
    config = TrainConfig(
        preset="emanet_tiny_demo", num_classes=3, weights=str(path), freeze_backbone=True,
        learning_rate=0.01, seed=2,
    )  # fmt: skip
    model = trainer.build_model(config)
    # The backbone of the paper, the ImageNet trunk, is frozen; the EMA head trains.
    backbone_paths = {variable.path for variable in model.image_encoder.weights}
    groups = parameter_groups(model)
    assert groups and not backbone_paths & set(groups)  # only the head is optimised
    assert groups[model.get_layer("classifier_conv").bias.path] == BIAS
    assert groups[model.backbone.get_layer("pre_ema_conv").kernel.path] == DECAYED
    trainer.compile_model(model, config)
    before = model_weights(model)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, 64, 64)).astype("int32")
    model.fit(images, labels, batch_size=2, epochs=1, verbose=0)
    after = model_weights(model)
    backbone_layers = model_weights(model.image_encoder)
    assert any("moving_mean" in variables for variables in backbone_layers.values())
    for layer, variables in backbone_layers.items():
        for name in variables:  # kernels, gamma/beta and the moving statistics alike
            assert np.array_equal(after[layer][name], before[layer][name]), f"{layer}/{name}"
    for layer, name in [
        ("pre_ema_conv", "kernel"), ("pre_ema_bn", "moving_mean"), ("post_ema_bn", "gamma"),
        ("classifier_conv", "kernel"), ("classifier_conv", "bias"),
    ]:  # fmt: skip
        assert not np.array_equal(after[layer][name], before[layer][name]), f"{layer}/{name}"


def test_freeze_backbone_needs_weights_to_start_from():
    config = TrainConfig(preset="emanet_tiny_demo", num_classes=3, freeze_backbone=True)
    with pytest.raises(SettingsError, match="--freeze_backbone .* --weights or --backbone_weights"):
        trainer.build_model(config)
