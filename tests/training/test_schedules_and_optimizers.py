import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.optimizers import BIAS, DECAYED, PLAIN, ParameterGroupSGD, parameter_groups
from ema_keras.schedules import PolyDecay
from tests.backends.optimizer_checks import official_first_step


def test_poly_decay_matches_formula_and_clamps():
    schedule = PolyDecay(0.009, 30000, power=0.9)
    for step in (0, 1, 15000, 29999):
        expected = 0.009 * (1 - step / 30000) ** 0.9
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5)
    assert float(schedule(30000)) == 0.0
    assert float(schedule(40000)) == 0.0


def test_poly_decay_warmup_and_config_round_trip():
    schedule = PolyDecay(0.01, 100, power=1.0, warmup_steps=10, warmup_start_ratio=0.1)
    np.testing.assert_allclose(float(schedule(0)), 0.001, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(5)), 0.01 * 0.95 * 0.55, rtol=1e-5)
    np.testing.assert_allclose(float(schedule(10)), 0.01 * 0.9, rtol=1e-5)
    clone = PolyDecay.from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config()


def test_poly_decay_rejects_bad_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        PolyDecay(0.01, 0)


def _tiny_model():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, x)


def test_parameter_groups_follow_the_official_rules():
    """One step from zero momentum: every group's update checked against PyTorch's rule."""
    model = _tiny_model()
    optimizer = ParameterGroupSGD(learning_rate=0.1, momentum=0.9, l2_weight_decay=0.01)
    variables = model.trainable_variables
    before = {v.path: v.numpy().copy() for v in variables}
    gradients = [np.full(v.shape, 0.5, "float32") for v in variables]
    optimizer.apply_gradients(zip(gradients, variables))
    for variable in variables:
        expected = official_first_step(variable, before[variable.path])
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6, err_msg=variable.path)


def test_parameter_groups_come_from_the_layers_of_the_model():
    from ema_keras.models import EMANetImageSegmenter

    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3)
    groups = parameter_groups(model)
    assert set(groups) == {v.path for v in model.trainable_variables}
    unit = model.backbone.get_layer("ema_unit")
    classifier = model.get_layer("classifier_conv")
    assert groups[unit.output_conv.kernel.path] == DECAYED  # a conv nested inside a layer
    assert groups[classifier.kernel.path] == DECAYED
    assert groups[classifier.bias.path] == BIAS
    assert groups[unit.output_norm.gamma.path] == groups[unit.output_norm.beta.path] == PLAIN
    kernels = [v for v in model.trainable_variables if v.name == "kernel"]
    assert sum(g == DECAYED for g in groups.values()) == len(kernels)


def test_parameter_groups_are_the_same_on_every_replica(mirrored_strategy):
    """Each replica's copy gets its group's update (a copy is named `.../replica_1:0`)."""
    from tests.replica_testing import assert_identical_on_every_replica, replica_copies

    with mirrored_strategy.scope():
        model = _tiny_model()
        optimizer = ParameterGroupSGD(learning_rate=0.1, momentum=0.9, l2_weight_decay=0.01)
        optimizer.set_parameter_groups(parameter_groups(model))
        optimizer.build(model.trainable_variables)
    variables = model.trainable_variables
    for variable in variables:  # different values, so that decay shows
        variable.assign(np.random.default_rng(0).normal(size=variable.shape).astype("float32"))
    before = {v.path: v.numpy().copy() for v in variables}

    @tf.function
    def step():
        def apply():
            gradients = [tf.fill(v.shape, 0.5) for v in variables]
            optimizer.apply_gradients(zip(gradients, variables))

        mirrored_strategy.run(apply)

    step()
    assert_identical_on_every_replica(variables + optimizer.variables, num_replicas=2)
    # Gradients are summed over the two replicas: 1.0 per element.
    for variable in variables:
        old = before[variable.path]
        rate = {"kernel": 0.1, "bias": 0.2}.get(variable.name, 0.1)
        decay = 0.01 * old if variable.name == "kernel" else 0.0
        for copy in replica_copies(variable):
            np.testing.assert_allclose(copy, old - rate * (1.0 + decay), rtol=1e-6,
                                       err_msg=variable.path)


def test_parameter_groups_must_be_set_before_build():
    model = _tiny_model()
    optimizer = ParameterGroupSGD()
    with pytest.raises(ValueError, match="Unknown parameter groups"):
        optimizer.set_parameter_groups({"conv/kernel": "decay"})
    optimizer.build(model.trainable_variables)
    assert [optimizer.variable_group(v) for v in model.trainable_variables] == [
        DECAYED, BIAS, PLAIN, PLAIN
    ]
    with pytest.raises(RuntimeError, match="before the optimizer is built"):
        optimizer.set_parameter_groups(parameter_groups(model))


def test_parameter_group_sgd_serializes_and_refuses_decoupled_decay():
    optimizer = ParameterGroupSGD(learning_rate=PolyDecay(0.01, 10), l2_weight_decay=1e-4)
    clone = ParameterGroupSGD.from_config(optimizer.get_config())
    assert clone.l2_weight_decay == 1e-4 and clone.bias_learning_rate_multiplier == 2.0
    with pytest.raises(ValueError, match="weight_decay"):
        ParameterGroupSGD(weight_decay=0.1)
