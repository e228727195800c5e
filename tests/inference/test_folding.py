"""fold_batch_norm: the folded inference model computes what the original computes."""

import keras
import numpy as np
import pytest

from ema_keras.inference.folding import fold_batch_norm
from ema_keras.models import (
    DilatedResNet,
    EMANet,
    EMANetBackbone,
    EMANetImageSegmenter,
    build_preset,
)


def tiny_emanet(concat_input=False, **kwargs):
    encoder = DilatedResNet(block_counts=[1, 1, 1, 1], width=8, output_stride=8, seed=1)
    backbone = EMANetBackbone(
        image_encoder=encoder, head_channels=32, classifier_channels=16, ema_num_bases=8,
        concat_input=concat_input, seed=2,
    )  # fmt: skip
    return EMANetImageSegmenter(
        backbone=backbone, **{"num_classes": 5, "aux_channels": 16, "seed": 2, **kwargs}
    )


def trained_statistics(model, seed=0):
    """Gives every BatchNorm statistics and an affine map far from identity, as training would."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, channels))
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            layer.beta.assign(rng.normal(0, 0.3, channels))
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def images(height=64, width=48, seed=0):
    return np.random.default_rng(seed).normal(size=(2, height, width, 3)).astype("float32")


def assert_same_logits(folded, reference):
    """<= 1e-4 relative to the logits' scale, and the same argmax."""
    scale = np.abs(reference).max()
    np.testing.assert_allclose(folded, reference, atol=1e-4 * scale, rtol=0)
    np.testing.assert_array_equal(folded.argmax(-1), reference.argmax(-1))


def count(model, kind):
    return sum(isinstance(layer, kind) for layer in _all_layers(model))


def test_emanet_folded_equals_original_before_and_after_a_keras_round_trip(tmp_path):
    model = trained_statistics(tiny_emanet())
    x = images()
    reference = model(x, training=False).numpy()
    folded = fold_batch_norm(model)
    # Every conv-BN pair of the backbone and the head folds; the EMA unit keeps its own BN.
    assert count(model, keras.layers.BatchNormalization) > 10
    assert count(folded, keras.layers.BatchNormalization) == 0
    assert folded.get_layer("pre_ema_conv").use_bias
    assert folded.get_layer("ema_unit").output_norm.built
    assert_same_logits(folded(x).numpy(), reference)
    path = tmp_path / "folded.keras"
    folded.save(path)
    loaded = keras.saving.load_model(path)
    assert_same_logits(loaded(x).numpy(), reference)
    # The original is untouched: its layers were copied, not shared.
    np.testing.assert_array_equal(model(x, training=False).numpy(), reference)
    assert not set(map(id, folded.layers)) & set(map(id, _all_layers(model)))


def test_a_file_of_0_1s_layout_folds_into_its_own_layout():
    encoder = DilatedResNet(block_counts=[1, 1, 1, 1], width=8, output_stride=8, seed=1)
    with pytest.warns(DeprecationWarning):
        model = EMANet(
            backbone=encoder, num_classes=5, head_channels=32, classifier_channels=16,
            ema_num_bases=8, aux_head=True, seed=2,
        )  # fmt: skip
    model = trained_statistics(model, seed=6)
    x = images()
    reference = model(x, training=False)
    folded = fold_batch_norm(model)
    assert count(folded, keras.layers.BatchNormalization) == 0
    assert folded.get_layer("ema_unit").output_norm.built  # flat, as the family's copy
    for name in ("logits", "aux_logits"):
        assert_same_logits(folded(x)[name].numpy(), reference[name].numpy())


def test_aux_head_outputs_and_other_layers_are_kept():
    model = trained_statistics(tiny_emanet(aux_head=True, concat_input=True), seed=3)
    x = images(40, 56, seed=1)
    reference = model(x, training=False)
    folded = fold_batch_norm(model)(x)
    assert set(folded) == {"logits", "aux_logits"}
    for name in folded:
        assert_same_logits(folded[name].numpy(), reference[name].numpy())


def test_a_batch_norm_whose_conv_output_is_read_elsewhere_is_kept():
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    normed = keras.layers.BatchNormalization(name="bn")(conv)
    plain = keras.layers.BatchNormalization(name="bn_of_input")(inputs)
    outputs = keras.layers.Concatenate()([normed, conv, plain])
    model = trained_statistics(keras.Model(inputs, outputs))
    folded = fold_batch_norm(model)
    assert count(folded, keras.layers.BatchNormalization) == 2
    x = images(8, 8)
    np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), atol=1e-5)


def test_depthwise_conv_with_a_depth_multiplier_folds():
    inputs = keras.Input((9, 9, 3))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(inputs)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    model = trained_statistics(keras.Model(inputs, keras.layers.ReLU()(x)), seed=4)
    folded = fold_batch_norm(model)
    assert count(folded, keras.layers.BatchNormalization) == 0
    x = images(9, 9)
    np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("preset", ["emanet_mobilenetv3_small_voc"])
def test_mobile_emanet_folds(preset, tmp_path):
    model = trained_statistics(build_preset(preset, num_classes=5, seed=0), seed=5)
    x = images(80, 64)
    reference = model(x, training=False).numpy()
    folded = fold_batch_norm(model)
    assert count(folded, keras.layers.BatchNormalization) == 0
    assert_same_logits(folded(x).numpy(), reference)
    folded.save(tmp_path / "mobile.keras")
    assert_same_logits(keras.saving.load_model(tmp_path / "mobile.keras")(x).numpy(), reference)


def test_bfloat16_copy_keeps_float32_logits():
    model = trained_statistics(tiny_emanet())
    folded = fold_batch_norm(model, dtype="mixed_bfloat16")
    assert folded.get_layer("pre_ema_conv").compute_dtype == "bfloat16"
    assert folded.get_layer("logits").compute_dtype == "float32"
    x = images()
    logits = folded(x).numpy()
    assert logits.dtype == np.float32
    reference = model(x, training=False).numpy()
    assert (logits.argmax(-1) == reference.argmax(-1)).mean() > 0.9


def test_a_subclassed_model_is_refused():
    class Plain(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="functional"):
        fold_batch_norm(Plain())
