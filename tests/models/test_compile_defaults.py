"""`EMANetImageSegmenter.compile()`: the official training setup as Keras' defaults."""

import os

import keras
import numpy as np
import pytest

import ema_keras
from ema_keras.losses import MaskedSparseCrossEntropy
from ema_keras.models import EMANetImageSegmenter
from ema_keras.optimizers import BIAS, DECAYED, PLAIN, ParameterGroupSGD
from ema_keras.schedules import PolyDecay

STEPS = 4


def tiny(aux_head=True, seed=5):
    return EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo",
        num_classes=3,
        aux_head=aux_head,
        dropout=0.0,
        image_shape=(32, 32, 3),
        seed=seed,
    )


def batch():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 32, 32, 1)).astype("int32")
    labels[:, :8] = 255  # the VOC border label: ignored by the official loss
    return images, labels


def test_auto_compile_is_the_official_setup():
    model = tiny()
    model.compile(decay_steps=STEPS)
    optimizer = model.optimizer
    assert isinstance(optimizer, ParameterGroupSGD)
    assert (optimizer.momentum, optimizer.l2_weight_decay) == (0.9, 1e-4)
    assert optimizer.bias_learning_rate_multiplier == 2.0
    schedule = optimizer._learning_rate
    assert isinstance(schedule, PolyDecay)
    np.testing.assert_allclose(
        [float(schedule(step)) for step in (0, 2, STEPS)],
        [0.009, 0.009 * 0.5**0.9, 0.0],
        rtol=1e-6,
    )
    assert isinstance(model.loss["logits"], MaskedSparseCrossEntropy)
    assert isinstance(model.loss["aux_logits"], MaskedSparseCrossEntropy)
    assert model._compile_config.config["loss_weights"] == {"logits": 1.0, "aux_logits": 0.4}
    # The model's own parameter groups: kernels decayed, biases faster, BatchNorm plain.
    optimizer.build(model.trainable_variables)
    groups = {v.path: optimizer.variable_group(v) for v in model.trainable_variables}
    assert groups["classifier_conv/kernel"] == DECAYED
    assert groups["classifier_conv/bias"] == BIAS
    assert groups["pre_ema_bn/gamma"] == PLAIN


def test_auto_compile_trains_exactly_as_the_recipe():
    """One step of compile() equals one step of the training recipe's compile (VOC defaults)."""
    from ema_keras.training.compiling import compile_model
    from ema_keras.training.config import TrainConfig

    images, labels = batch()
    ours, recipes = tiny(), tiny()
    recipes.set_weights(ours.get_weights())
    ours.compile(decay_steps=STEPS)
    compile_model(recipes, TrainConfig(steps=STEPS), jit_compile=False)
    targets = {"logits": labels, "aux_logits": labels}
    for _ in range(2):
        ours_logs = ours.train_on_batch(images, targets, return_dict=True)
        recipes_logs = recipes.train_on_batch(images, targets, return_dict=True)
    for got, expected in zip(ours.get_weights(), recipes.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert ours_logs.keys() == recipes_logs.keys()
    assert "mean_iou" in "".join(ours_logs)
    np.testing.assert_allclose(ours_logs["loss"], recipes_logs["loss"], rtol=1e-5)


def test_what_is_given_is_used_as_given():
    model = tiny(aux_head=False)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert model._compile_config.config["loss_weights"] is None
    with pytest.raises(ValueError, match="decay_steps"):
        model.compile(optimizer="adam", decay_steps=10)
    # One loss for both outputs of an auxiliary head: Keras applies it to each, unweighted.
    with_aux = tiny()
    with_aux.compile(loss=keras.losses.SparseCategoricalCrossentropy(True))
    assert with_aux._compile_config.config["loss_weights"] is None
    images, labels = batch()
    labels = labels % 255  # the plain loss takes no ignored label
    logs = with_aux.train_on_batch(images, {"logits": labels, "aux_logits": labels},
                                   return_dict=True)
    assert np.isfinite(logs["loss"])


def test_auto_compiled_file_loads_after_a_bare_import(tmp_path):
    model = tiny(aux_head=False)
    model.compile()
    images, labels = batch()
    model.fit(images, labels, epochs=1, verbose=0)
    path = os.path.join(str(tmp_path), "fitted.keras")
    model.save(path)
    assert ema_keras.__name__  # the registration the file relies on
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, EMANetImageSegmenter)
    assert isinstance(loaded.optimizer, ParameterGroupSGD)
    assert isinstance(loaded.loss, MaskedSparseCrossEntropy)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-5)
    # Training goes on from the saved optimizer state.
    loaded.fit(images, labels, epochs=1, verbose=0)
    assert int(loaded.optimizer.iterations) == 2
