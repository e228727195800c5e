"""ParameterGroupSGD's update on the running backend, for the JAX and torch check programs.

`fit` applies the optimizer through the backend's own path (JAX: a jitted
`stateless_apply` on the variables' values; torch: `apply`), so the groups'
rules are checked through that path against PyTorch's SGD rule.
"""

import keras
import numpy as np

from ema_keras.optimizers import ParameterGroupSGD, parameter_groups


def official_first_step(variable, old):
    """`variable` after PyTorch's SGD step from zero momentum under the official groups:
    gradient 0.5, lr 0.1, weight decay 0.01 on kernels only, biases at twice the rate."""
    if variable.name == "kernel":
        return old - 0.1 * (0.5 + 0.01 * old)
    if variable.name == "bias":
        return old - 0.2 * 0.5
    return old - 0.1 * 0.5  # BN gamma / beta: no decay, base rate


def check_parameter_groups_follow_the_official_rules():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(x))
    optimizer = ParameterGroupSGD(learning_rate=0.1, momentum=0.9, l2_weight_decay=0.01)
    optimizer.set_parameter_groups(parameter_groups(model))
    variables = model.trainable_variables
    optimizer.build(variables)
    before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    gradients = [np.full(v.shape, 0.5, "float32") for v in variables]
    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(optimizer.stateless_apply)
        values, _ = step(
            [v.value for v in optimizer.variables], gradients, [v.value for v in variables]
        )
    else:
        optimizer.apply_gradients(zip(gradients, variables))
        values = [v.value for v in variables]
    for variable, old, new in zip(variables, before, values):
        actual = keras.ops.convert_to_numpy(new)
        expected = official_first_step(variable, old)
        np.testing.assert_allclose(actual, expected, rtol=1e-6, err_msg=variable.path)
    print("ParameterGroupSGD applies the official groups' rules")
