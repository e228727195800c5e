import inspect
import os

import keras
import numpy as np
import pytest

from ema_keras.layers.em_attention import EMAUnit
from ema_keras.models import PRESETS, DilatedResNet, EMANet, get_preset

NUM_CLASSES = 5


def tiny_emanet(**kwargs):
    backbone_kwargs = kwargs.pop("backbone_kwargs", {})
    backbone = DilatedResNet(block_counts=[1, 1, 1, 1], width=8, **backbone_kwargs)
    defaults = dict(
        num_classes=NUM_CLASSES, head_channels=32, classifier_channels=16, ema_num_bases=8
    )
    return EMANet(backbone=backbone, **{**defaults, **kwargs})


def images(batch=2, height=64, width=64, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")


def test_head_follows_the_paper():
    model = tiny_emanet()
    assert model.get_layer("pre_ema_conv").kernel.shape == (3, 3, 256, 32)
    assert not model.get_layer("pre_ema_conv").use_bias
    unit = model.get_layer("ema_unit")
    assert isinstance(unit, EMAUnit)
    assert (unit.num_bases, unit.num_iterations, unit.momentum) == (8, 3, 0.9)
    assert unit.em_attention.bases.shape == (32, 8)
    assert model.get_layer("post_ema_conv").kernel.shape == (3, 3, 32, 16)
    assert isinstance(model.get_layer("classifier_dropout"), keras.layers.SpatialDropout2D)
    assert model.get_layer("classifier_dropout").rate == 0.1
    classifier = model.get_layer("classifier_conv")
    assert classifier.kernel.shape == (1, 1, 16, NUM_CLASSES) and classifier.use_bias
    assert model.get_layer("logits").align_corners
    assert all(
        layer.epsilon == 1e-5
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


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
    assert model.get_layer("concat_input_conv").kernel.shape == (3, 3, 256 + 16, 16)
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
    bases_before = model.get_layer("ema_unit").em_attention.bases.numpy().copy()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,  # 8 tiny steps: faster than tracing the step
    )
    history = model.fit(batch, labels, batch_size=4, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
    bases_after = model.get_layer("ema_unit").em_attention.bases.numpy()
    assert np.abs(bases_after - bases_before).max() > 1e-4


def test_save_and_load_model_round_trip(tmp_path):
    model = tiny_emanet(aux_head=True, seed=5)
    batch = images(height=40, width=48)
    model(batch, training=True)  # moves BN statistics and the EMA bases off their init
    path = os.path.join(str(tmp_path), "emanet.keras")
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert type(reloaded) is EMANet and type(reloaded.backbone) is DilatedResNet
    assert reloaded.get_config() == model.get_config()
    expected, actual = model(batch), reloaded(batch)
    for key in ("logits", "aux_logits"):
        np.testing.assert_array_equal(expected[key].numpy(), actual[key].numpy())
    np.testing.assert_array_equal(
        reloaded.get_layer("ema_unit").em_attention.bases.numpy(),
        model.get_layer("ema_unit").em_attention.bases.numpy(),
    )
    original = {w.path: w.numpy() for w in model.weights}
    assert len(original) == len(reloaded.weights)
    for weight in reloaded.weights:
        np.testing.assert_array_equal(weight.numpy(), original[weight.path])


def test_mixed_float16_keeps_logits_float32(tmp_path):
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    model = tiny_emanet(aux_head=True)
    assert model.get_layer("classifier_conv").compute_dtype == "float16"
    assert model.get_layer("pre_ema_conv").compute_dtype == "float16"
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
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all(norm.synchronized for norm in norms)
    assert model.get_layer("ema_unit").output_norm.synchronized
    assert model.get_config()["batch_norm_synchronized"] is True
    assert not tiny_emanet().get_config()["batch_norm_synchronized"]


def test_from_preset_routes_overrides():
    model = EMANet.from_preset("emanet_tiny_demo", num_classes=3, output_stride=16, dropout=0.2)
    assert model.backbone.output_stride == 16 and model.backbone.width == 8
    assert model.get_layer("classifier_conv").kernel.shape[-1] == 3
    assert model.get_layer("classifier_dropout").rate == 0.2
    assert tuple(model(images(height=32, width=32)).shape) == (2, 32, 32, 3)
    built = DilatedResNet(block_counts=[1, 1, 1, 1], width=8, output_stride=32)
    assert EMANet.from_preset("emanet_tiny_demo", backbone=built).backbone is built
    with pytest.raises(ValueError, match="output_stride"):
        EMANet.from_preset("emanet_tiny_demo", backbone=built, output_stride=8)
    with pytest.raises(ValueError, match="emanet_resnet9"):
        EMANet.from_preset("emanet_resnet9")


def test_presets_hold_valid_arguments():
    from ema_keras.models import MobileEMANet, MobileNetV3Backbone, preset_architecture

    classes = {
        "emanet": (EMANet, DilatedResNet),
        "mobile_emanet": (MobileEMANet, MobileNetV3Backbone),
    }
    for name in PRESETS:
        model_class, backbone_class = classes[preset_architecture(name)]
        preset = get_preset(name)
        backbone_args = set(inspect.signature(backbone_class.__init__).parameters)
        assert set(preset.pop("backbone")) <= backbone_args, name
        assert set(preset) <= set(inspect.signature(model_class.__init__).parameters), name
    paper = get_preset("emanet_resnet101_os8_voc")
    assert paper["backbone"] == {
        "depth": 101, "stem": "deep", "output_stride": 8, "batch_norm_momentum": 0.9997
    }
    assert paper["num_classes"] == 21
    # The official BN momentum (PyTorch 3e-4) reaches every BatchNorm of the model.
    model = EMANet.from_preset("emanet_resnet50_os16")
    assert model.batch_norm_momentum == 0.9
    official = EMANet.from_preset(
        "emanet_resnet101_os16_voc", backbone={"depth": 50, "width": 8}, head_channels=16,
        classifier_channels=8, ema_num_bases=4,
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
        EMANet(backbone=keras.applications.MobileNetV3Small)
