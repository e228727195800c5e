import inspect
import os

import keras
import numpy as np
import pytest

from ema_keras.layers.em_attention import EMAUnit
from ema_keras.models import (
    PRESETS,
    DilatedResNet,
    EMANet,
    EMANetBackbone,
    EMANetImageSegmenter,
    get_preset,
)
from ema_keras.models.segmenter_parts import find_layer

NUM_CLASSES = 5
# The backbone's own arguments (the EMA head's); seed and dtype go to both levels.
HEAD_ARGUMENTS = set(EMANetBackbone.config_arguments()) - {"image_encoder", "seed", "dtype"}


def tiny_emanet(image_shape=(None, None, 3), backbone_kwargs=None, **kwargs):
    """A tiny segmenter; `kwargs` go to the segmenter or, the head's, to its backbone."""
    encoder = DilatedResNet(
        block_counts=[1, 1, 1, 1], width=8, image_shape=image_shape, **(backbone_kwargs or {})
    )
    head = dict(head_channels=32, classifier_channels=16, ema_num_bases=8)
    head.update({key: kwargs.pop(key) for key in list(kwargs) if key in HEAD_ARGUMENTS})
    shared = {key: kwargs[key] for key in ("seed", "dtype") if key in kwargs}
    backbone = EMANetBackbone(image_encoder=encoder, **head, **shared)
    return EMANetImageSegmenter(
        backbone=backbone, **{"num_classes": NUM_CLASSES, "aux_channels": 16, **kwargs}
    )


def layer(model, name):
    return find_layer(model, name)[0]


def all_layers(model):
    return [
        inner for outer in model.layers
        for inner in (all_layers(outer) if isinstance(outer, keras.Model) else [outer])
    ]  # fmt: skip


def images(batch=2, height=64, width=64, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")


def test_head_follows_the_paper():
    model = tiny_emanet()
    backbone = model.backbone
    assert sorted(backbone.output) == ["P2", "P3", "P4", "P5", "features"]
    assert sorted(backbone.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    assert tuple(backbone.output["features"].shape) == (None, None, None, 16)
    assert backbone.output_stride == 8
    assert backbone.get_layer("pre_ema_conv").kernel.shape == (3, 3, 256, 32)
    assert not backbone.get_layer("pre_ema_conv").use_bias
    unit = backbone.get_layer("ema_unit")
    assert isinstance(unit, EMAUnit)
    assert (unit.num_bases, unit.num_iterations, unit.momentum) == (8, 3, 0.9)
    assert unit.em_attention.bases.shape == (32, 8)
    assert backbone.get_layer("post_ema_conv").kernel.shape == (3, 3, 32, 16)
    assert isinstance(model.get_layer("classifier_dropout"), keras.layers.SpatialDropout2D)
    assert model.get_layer("classifier_dropout").rate == 0.1
    classifier = model.get_layer("classifier_conv")
    assert classifier.kernel.shape == (1, 1, 16, NUM_CLASSES) and classifier.use_bias
    assert model.get_layer("logits").align_corners
    norms = [l for l in all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all(norm.epsilon == 1e-5 for norm in norms)


def test_variable_input_size_gives_logits_at_input_size():
    model = tiny_emanet()
    assert tuple(model.output.shape) == (None, None, None, NUM_CLASSES)
    for height, width in ((64, 64), (40, 72), (33, 47)):
        logits = model(images(height=height, width=width))
        assert tuple(logits.shape) == (2, height, width, NUM_CLASSES)
        assert logits.dtype == "float32"
    fixed = tiny_emanet(image_shape=(48, 48, 3))
    assert tuple(fixed.output.shape) == (None, 48, 48, NUM_CLASSES)


def test_logits_are_the_aligned_corner_upsampling_of_the_classifier():
    model = tiny_emanet()
    probe = keras.Model(model.input, model.get_layer("classifier_conv").output)
    batch = images(height=64, width=64)
    low = probe(batch).numpy()  # (2, 8, 8, C)
    logits = model(batch).numpy()
    assert low.shape[1:3] == (8, 8)
    # align_corners: output corners and every 9th row/column hit input pixels.
    np.testing.assert_allclose(logits[:, ::9, ::9], low, atol=1e-5)


def test_aux_head_and_concat_input():
    model = tiny_emanet(aux_head=True, concat_input=True)
    assert model.get_layer("aux_conv").kernel.shape == (3, 3, 128, 16)  # from P4
    assert layer(model, "concat_input_conv").kernel.shape == (3, 3, 256 + 16, 16)
    outputs = model(images(height=48, width=56))
    assert set(outputs) == {"logits", "aux_logits"}
    for value in outputs.values():
        assert tuple(value.shape) == (2, 48, 56, NUM_CLASSES) and value.dtype == "float32"
    assert not np.allclose(outputs["logits"].numpy(), outputs["aux_logits"].numpy())

    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss={
            "logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "aux_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        },
        loss_weights={"logits": 1.0, "aux_logits": 0.4},
    )
    labels = np.random.default_rng(1).integers(0, NUM_CLASSES, size=(2, 48, 56))
    logs = model.train_on_batch(
        images(height=48, width=56), {"logits": labels, "aux_logits": labels}, return_dict=True
    )
    assert np.isclose(logs["loss"], logs["logits_loss"] + 0.4 * logs["aux_logits_loss"], rtol=1e-4)


def test_small_model_learns_a_synthetic_batch():
    model = tiny_emanet(dropout=0.0)
    # 8x8-pixel cells of random classes, each class with its own colour.
    rng = np.random.default_rng(3)
    cells = rng.integers(0, NUM_CLASSES, size=(4, 4, 4))
    labels = np.repeat(np.repeat(cells, 8, axis=1), 8, axis=2)
    colours = rng.normal(size=(NUM_CLASSES, 3)).astype("float32")
    batch = colours[labels] + 0.1 * rng.normal(size=labels.shape + (3,)).astype("float32")
    bases_before = layer(model, "ema_unit").em_attention.bases.numpy().copy()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,  # 8 tiny steps: faster than tracing the step
    )
    history = model.fit(batch, labels, batch_size=4, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
    bases_after = layer(model, "ema_unit").em_attention.bases.numpy()
    assert np.abs(bases_after - bases_before).max() > 1e-4


def test_save_and_load_model_round_trip(tmp_path):
    model = tiny_emanet(aux_head=True, seed=5)
    batch = images(height=40, width=48)
    model(batch, training=True)  # moves BN statistics and the EMA bases off their init
    path = os.path.join(str(tmp_path), "emanet.keras")
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert type(reloaded) is EMANetImageSegmenter and type(reloaded.backbone) is EMANetBackbone
    assert type(reloaded.image_encoder) is DilatedResNet
    assert reloaded.get_config() == model.get_config()
    expected, actual = model(batch), reloaded(batch)
    for key in ("logits", "aux_logits"):
        np.testing.assert_array_equal(expected[key].numpy(), actual[key].numpy())
    np.testing.assert_array_equal(
        layer(reloaded, "ema_unit").em_attention.bases.numpy(),
        layer(model, "ema_unit").em_attention.bases.numpy(),
    )
    original = {w.path: w.numpy() for w in model.weights}
    assert len(original) == len(reloaded.weights)
    for weight in reloaded.weights:
        np.testing.assert_array_equal(weight.numpy(), original[weight.path])


def test_mixed_float16_keeps_logits_float32(tmp_path):
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    model = tiny_emanet(aux_head=True)
    assert model.get_layer("classifier_conv").compute_dtype == "float16"
    assert layer(model, "pre_ema_conv").compute_dtype == "float16"
    assert all(w.dtype == "float32" for w in model.weights)
    batch = images(height=32, width=32)
    outputs = model(batch)
    for value in outputs.values():
        assert value.dtype == "float32" and np.all(np.isfinite(value.numpy()))
    path = os.path.join(str(tmp_path), "half.keras")
    model.save(path)
    keras.mixed_precision.set_dtype_policy("float32")
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert reloaded.get_layer("classifier_conv").compute_dtype == "float16"
    np.testing.assert_array_equal(reloaded(batch)["logits"].numpy(), model(batch)["logits"].numpy())
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labels = np.zeros((2, 32, 32), "int32")
    logs = model.train_on_batch(batch, {"logits": labels, "aux_logits": labels}, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_batch_norm_synchronized_under_a_strategy(mirrored_strategy):
    with mirrored_strategy.scope():
        model = tiny_emanet()
    norms = [l for l in all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all(norm.synchronized for norm in norms)
    assert layer(model, "ema_unit").output_norm.synchronized
    assert model.get_config()["batch_norm_synchronized"] is True
    assert model.backbone.get_config()["batch_norm_synchronized"] is True
    assert not tiny_emanet().get_config()["batch_norm_synchronized"]


def test_from_preset_routes_overrides():
    model = EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo", num_classes=3, output_stride=16, dropout=0.2, head_channels=24,
        seed=4,
    )  # fmt: skip
    assert model.image_encoder.output_stride == 16 and model.image_encoder.width == 8
    assert model.backbone.head_channels == 24 and model.backbone.output_stride == 16
    assert model.seed == model.backbone.seed == model.image_encoder.seed == 4
    assert model.get_layer("classifier_conv").kernel.shape[-1] == 3
    assert model.get_layer("classifier_dropout").rate == 0.2
    assert tuple(model(images(height=32, width=32)).shape) == (2, 32, 32, 3)
    encoder = DilatedResNet(block_counts=[1, 1, 1, 1], width=8, output_stride=32)
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", image_encoder=encoder)
    assert model.image_encoder is encoder and model.backbone.head_channels == 32
    with pytest.raises(ValueError, match="output_stride"):
        EMANetImageSegmenter.from_preset("emanet_tiny_demo", image_encoder=encoder, output_stride=8)
    backbone = EMANetBackbone(image_encoder=encoder, head_channels=8, classifier_channels=8)
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", backbone=backbone, num_classes=2)
    assert model.backbone is backbone and tuple(model.output.shape)[-1] == 2
    with pytest.raises(ValueError, match="head_channels"):
        EMANetImageSegmenter.from_preset("emanet_tiny_demo", backbone=backbone, head_channels=4)
    with pytest.raises(ValueError, match="emanet_resnet9"):
        EMANetImageSegmenter.from_preset("emanet_resnet9")


def test_the_old_classes_warn_and_build_the_family():
    with pytest.warns(DeprecationWarning, match="EMANetImageSegmenter.from_preset"):
        model = EMANet.from_preset("emanet_tiny_demo", num_classes=3)
    assert type(model) is EMANetImageSegmenter
    with pytest.warns(DeprecationWarning, match="0.1's layout"):
        old = EMANet(backbone=DilatedResNet(block_counts=[1, 1, 1, 1], width=8), head_channels=8)
    # 0.1's layout: the head's layers in the segmenter, the encoder as its backbone.
    assert type(old.backbone) is DilatedResNet and old.get_layer("ema_unit") is not None
    from ema_keras.models import MobileEMANet

    with pytest.raises(ValueError, match="not MobileEMANet's architecture"):
        with pytest.warns(DeprecationWarning):
            MobileEMANet.from_preset("emanet_tiny_demo")


def test_presets_hold_valid_arguments():
    from ema_keras.models import MobileEMANetBackbone, MobileNetV3Backbone, preset_architecture

    classes = {
        "emanet": (EMANetBackbone, DilatedResNet),
        "mobile_emanet": (MobileEMANetBackbone, MobileNetV3Backbone),
    }

    def arguments(cls):
        return set(inspect.signature(cls.__init__).parameters)

    for name in PRESETS:
        backbone_class, encoder_class = classes[preset_architecture(name)]
        preset = get_preset(name)
        backbone = preset.pop("backbone")
        assert set(backbone.pop("image_encoder")) <= arguments(encoder_class), name
        assert set(backbone) <= arguments(backbone_class), name
        assert set(preset) <= arguments(EMANetImageSegmenter), name
    paper = get_preset("emanet_resnet101_os8_voc")
    assert paper["backbone"]["image_encoder"] == {
        "depth": 101, "stem": "deep", "output_stride": 8, "batch_norm_momentum": 0.9997
    }
    assert paper["num_classes"] == 21
    # The official BN momentum (PyTorch 3e-4) reaches every BatchNorm of the model.
    model = EMANetImageSegmenter.from_preset("emanet_resnet50_os16")
    assert model.batch_norm_momentum == model.backbone.batch_norm_momentum == 0.9
    official = EMANetImageSegmenter.from_preset(
        "emanet_resnet101_os16_voc", image_encoder={"depth": 50, "width": 8}, head_channels=16,
        classifier_channels=8, ema_num_bases=4, aux_head=True,
    )
    momenta = {
        layer.momentum for layer in official._flatten_layers() if hasattr(layer, "moving_mean")
    }
    assert momenta == {0.9997}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=0), "num_classes"),
        (dict(head_channels=0), "head_channels"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_emanet(**kwargs)
    with pytest.raises(ValueError, match="backbone"):
        EMANetImageSegmenter(backbone=keras.applications.MobileNetV3Small)
    with pytest.raises(ValueError, match="image_encoder"):
        EMANetBackbone(image_encoder=keras.applications.MobileNetV3Small)
