"""The private Keras internals ema-keras still relies on, checked against the installed Keras.

Each is used where Keras 3.15 has no public route (issue 22, item 4); a Keras
release that renames, removes or re-signs one fails here, by name, before the
behaviour built on it fails somewhere less clear. The use sites say
"Keras 3.15 internal" and point here. Removing a use removes its case.
"""

import inspect

import keras
import numpy as np


def tiny_functional():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(inputs)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, outputs)


def parameters(function):
    return list(inspect.signature(function).parameters)


def test_functional_graph_walk():
    """models/functional_model.py (clone_model keeps our class), inference/folding.py."""
    model = tiny_functional()
    assert parameters(type(model)._run_through_graph)[:3] == ["self", "inputs", "operation_fn"]
    assert isinstance(model._nodes_by_depth, dict)
    bn = model.get_layer("bn")
    (node,) = bn._inbound_nodes
    (source,) = node.input_tensors
    assert source._keras_history.operation is model.get_layer("conv")
    # The walk calls operation_fn(layer) for each layer and runs what it returns.
    seen = []
    outputs = model._run_through_graph(
        keras.ops.ones((1, 8, 8, 3)), operation_fn=lambda op: seen.append(op.name) or op
    )
    assert seen == ["conv", "bn"] and tuple(outputs.shape) == (1, 8, 8, 4)


def test_clone_model_reads_the_constructor_signature():
    """models/functional_model.py: clone_model rebuilds a "functional-like" class (one whose
    constructor reads (self, *args, ..., **kwargs)) as cls(inputs, outputs, name=...),
    which our constructors take as a clone."""
    from keras.src.models.functional import functional_like_constructor

    from ema_keras.models import EMANet

    assert functional_like_constructor(EMANet)
    assert "functional_like_constructor(model.__class__)" in inspect.getsource(
        inspect.getmodule(keras.models.clone_model)
    )


def test_batch_norm_moments_hook():
    """layers/batch_norm.py: SyncBatchNormalization replaces the statistics of a batch."""
    layer = keras.layers.BatchNormalization()
    assert parameters(type(layer)._moments) == ["self", "inputs", "mask"]
    layer.build((2, 4))
    x = np.arange(8, dtype="float32").reshape(2, 4)
    mean, variance = layer._moments(keras.ops.convert_to_tensor(x), None)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mean), x.mean(0))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variance), x.var(0))
    assert isinstance(layer._reduction_axes, list)


def test_symbolic_build_of_a_compiled_model():
    """training/trainer.py: optimizer and metric variables built before the first step,
    under the strategy's scope, and Keras' own later build switched off."""
    model = tiny_functional()
    model.compile(optimizer="sgd", loss="mse")
    assert parameters(model._symbolic_build) == ["iterator", "data_batch"]
    assert parameters(model._maybe_symbolic_build) == ["iterator", "data_batch"]
    model._symbolic_build(data_batch=(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 4))))
    assert model.optimizer.built


def test_optimizer_variable_index():
    """optimizers.py: the slot index of a variable (a replica's copy resolves to the same)."""
    optimizer = keras.optimizers.SGD()
    variables = [keras.Variable(np.zeros(2)), keras.Variable(np.ones(3))]
    optimizer.build(variables)
    assert optimizer._get_variable_index(variables[1]) == 1
