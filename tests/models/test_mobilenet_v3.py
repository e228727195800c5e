"""MobileNetV3 backbone (keras.applications names and weights) and the mobile EMANet presets."""

import h5py
import keras
import numpy as np
import pytest

from ema_keras.export import export_and_verify
from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ema_keras.models import (
    EMANetBackbone,
    EMANetImageSegmenter,
    MobileEMANetBackbone,
    MobileNetV3Backbone,
    build_preset,
    preset_architecture,
)
from ema_keras.models.mobilenet_v3 import BLOCKS, block_strides

APPLICATIONS = {
    "large": keras.applications.MobileNetV3Large,
    "small": keras.applications.MobileNetV3Small,
}
PARAMS = {"large": 2_996_352, "small": 939_120}
MOBILE_PRESETS = ("emanet_mobilenetv3_large_voc", "emanet_mobilenetv3_small_voc")


def applications_model(variant, seed=3):
    """A randomly initialised keras.applications trunk with random BN statistics."""
    keras.utils.set_random_seed(seed)
    model = APPLICATIONS[variant](
        input_shape=(96, 96, 3), include_top=False, include_preprocessing=False, weights=None
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.random.uniform(-0.1, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(np.random.uniform(0.5, 2, layer.moving_variance.shape))
    return model


def normalized(pixels):
    return ((pixels - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).astype("float32")


def layer_shapes(model):
    return {
        layer.name: [tuple(w.shape) for w in layer.weights]
        for layer in model.layers
        if layer.weights
    }


@pytest.mark.parametrize("variant", ["large", "small"])
def test_parameters_and_names_equal_keras_applications(variant):
    reference = APPLICATIONS[variant](include_top=False, include_preprocessing=False, weights=None)
    for output_stride in (8, 16, 32):
        for include_preprocessing in (True, False):  # the input mapping has no weights
            backbone = MobileNetV3Backbone(
                variant=variant,
                output_stride=output_stride,
                include_preprocessing=include_preprocessing,
            )
            assert backbone.count_params() == reference.count_params() == PARAMS[variant]
            assert layer_shapes(backbone) == layer_shapes(reference)


@pytest.mark.parametrize("variant", ["large", "small"])
def test_output_strides(variant):
    expected = {
        32: {"P2": 24, "P3": 12, "P4": 6, "P5": 3},
        16: {"P2": 24, "P3": 12, "P4": 6, "P5": 6},
        8: {"P2": 24, "P3": 12, "P4": 12, "P5": 12},
    }
    for output_stride, sizes in expected.items():
        backbone = MobileNetV3Backbone(
            variant=variant, output_stride=output_stride, image_shape=(96, 96, 3)
        )
        shapes = {name: tuple(t.shape[1:3]) for name, t in backbone.pyramid_outputs.items()}
        assert shapes == {name: (size, size) for name, size in sizes.items()}
        assert backbone.pyramid_outputs["P5"].shape[-1] == {"large": 960, "small": 576}[variant]


def test_dilation_replaces_the_last_strides():
    large = BLOCKS["large"]  # strided blocks: 1, 3, 6, 12
    assert block_strides(large, 16)[12:] == [(1, 1), (1, 2), (1, 2)]
    assert block_strides(large, 8)[6:] == [(1, 1)] + [(1, 2)] * 6 + [(1, 4)] * 2
    assert all(rate == 1 for _, rate in block_strides(large, 32))
    with pytest.raises(ValueError, match="output_stride"):
        block_strides(large, 4)


@pytest.mark.parametrize("variant", ["large", "small"])
def test_applications_h5_loads_by_name(variant, tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    reference = applications_model(variant)
    path = tmp_path / f"mobilenet_v3_{variant}_notop.h5"
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, reference)
    backbone = MobileNetV3Backbone(variant=variant, output_stride=16)
    backbone.load_imagenet_weights(path)
    ours = {layer.name: layer for layer in backbone.layers}
    checked = 0
    for layer in reference.layers:
        if layer.weights:
            assert len(ours[layer.name].weights) == len(layer.weights)
            for theirs, mine in zip(layer.weights, ours[layer.name].weights):
                np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
                checked += 1
    assert checked == len(backbone.weights)
    # Undilated, the trunk computes what keras.applications computes on [-1, 1]
    # pixels, from raw pixels (straight to that range) and, with
    # include_preprocessing=False, from ImageNet-normalised input.
    pixels = np.random.RandomState(0).uniform(0, 255, (1, 96, 96, 3)).astype("float32")
    expected = reference(pixels / 127.5 - 1.0).numpy()
    raw = MobileNetV3Backbone(variant=variant, output_stride=32).load_imagenet_weights(path)
    np.testing.assert_allclose(raw(pixels)["P5"].numpy(), expected, atol=1e-4)
    plain = MobileNetV3Backbone(variant=variant, output_stride=32, include_preprocessing=False)
    plain.load_imagenet_weights(path)
    np.testing.assert_allclose(plain(normalized(pixels))["P5"].numpy(), expected, atol=1e-4)


def test_mismatched_h5_is_refused(tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    from ema_keras.weights import WeightsMismatchError

    path = tmp_path / "small.h5"
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, applications_model("small"))
    with pytest.raises(WeightsMismatchError):
        MobileNetV3Backbone(variant="large").load_imagenet_weights(path)


@pytest.mark.parametrize("preset", MOBILE_PRESETS)
def test_preset_builds_calls_saves_and_loads(preset, tmp_path):
    assert preset_architecture(preset) == "mobile_emanet"
    model = build_preset(preset, num_classes=5, seed=0)
    assert isinstance(model, EMANetImageSegmenter)
    assert isinstance(model.backbone, MobileEMANetBackbone)
    assert isinstance(model.image_encoder, MobileNetV3Backbone)
    assert model.backbone.output_stride == {"large": 16, "small": 32}[preset.split("_")[2]]
    head = model.backbone
    assert (head.ema_num_bases, head.ema_num_iterations, head.head_channels) == (16, 1, 128)
    # LR-ASPP's fusion: the head's map and P3 classified, summed.
    assert tuple(head.output["features"].shape)[1:] == (None, None, 128)
    assert model.get_layer("classifier_low").input.shape[-1] == head.output["P3"].shape[-1]
    images = np.random.RandomState(1).normal(size=(2, 80, 64, 3)).astype("float32")
    logits = model(images).numpy()
    assert logits.shape == (2, 80, 64, 5) and logits.dtype == np.float32
    path = tmp_path / "mobile.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.backbone, MobileEMANetBackbone)
    np.testing.assert_allclose(loaded(images).numpy(), logits, atol=1e-5)
    clone = keras.models.clone_model(model)
    assert isinstance(clone, EMANetImageSegmenter)
    assert isinstance(clone.backbone, MobileEMANetBackbone)
    assert isinstance(clone.image_encoder, MobileNetV3Backbone)
    with pytest.raises(TypeError, match="num_clases"):
        EMANetImageSegmenter.from_preset(preset, num_clases=3)
    with pytest.raises(TypeError, match="'varient'.*'variant'"):
        MobileNetV3Backbone(varient="large")


def test_build_preset_puts_resnet_presets_on_the_resnet_backbone():
    assert preset_architecture("emanet_tiny_demo") == "emanet"
    model = build_preset("emanet_tiny_demo", num_classes=3)
    assert isinstance(model, EMANetImageSegmenter) and isinstance(model.backbone, EMANetBackbone)


def test_one_training_step():
    model = build_preset("emanet_mobilenetv3_small_voc", num_classes=3, seed=0)
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    images = np.random.RandomState(0).normal(size=(2, 64, 64, 3)).astype("float32")
    labels = np.random.RandomState(1).randint(0, 3, (2, 64, 64))
    history = model.fit(images, labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.slow
@pytest.mark.parametrize("preset", MOBILE_PRESETS)
def test_preset_exports_to_full_integer_int8(preset, tmp_path):
    """Builtin-ops-only int8 TFLite at 96x96, verified against Keras (~40 s each)."""
    rng = np.random.RandomState(0)
    # Smooth images (upsampled 6x6 noise) and BatchNorm statistics from them,
    # so that the untrained network's activations have realistic ranges.
    images = [
        np.clip(
            keras.ops.image.resize(rng.uniform(0, 255, (1, 6, 6, 3)), (96, 96)).numpy()[0], 0, 255
        ).astype("uint8")
        for _ in range(8)
    ]
    model = build_preset(preset, seed=0)
    batch = np.stack(images).astype("float32")  # raw pixels, what the model takes
    for _ in range(30):
        model(batch, training=True)
    (float_report, int8_report) = export_and_verify(
        model,
        tmp_path,
        images=images[:4],
        representative_images=images,
        formats=("tflite_fp32", "tflite_int8"),
        image_size=(96, 96),
        thresholds={"tflite_int8": 0.5},  # an untrained argmax; see the logit check below
        print_table=False,
    )
    assert float_report.passed and float_report.max_abs_logit_diff < 1e-3
    assert int8_report.passed, int8_report
    logits = model(batch[:4]).numpy()
    assert int8_report.max_abs_logit_diff < 0.25 * (logits.max() - logits.min())


@pytest.mark.parametrize(
    "recipe, preset",
    [("voc_mobile", MOBILE_PRESETS[0]), ("demo_mobile", MOBILE_PRESETS[1])],
)
def test_mobile_recipes_name_the_mobile_presets(recipe, preset):
    from ema_keras.training.config import RECIPES, check_settings, get_recipe

    config = check_settings(get_recipe(recipe))
    assert config.preset == preset
    if recipe == "demo_mobile":  # the demo recipe on the preset, three times the steps
        assert config == get_recipe(
            "demo", preset=preset, steps=900, steps_per_checkpoint=100
        ) and config != RECIPES["demo"]
    model = build_preset(config.preset, num_classes=21, seed=config.seed)
    assert isinstance(model.backbone, MobileEMANetBackbone)
