"""Shared checks for custom layers, in the spirit of keras-hub's run_layer_test.

`run_layer_test` runs the checks that every ema-keras layer must pass: config
round trip, symbolic and eager call, weight counts, one `fit` step, mixed
precision dtypes and a `.keras` save/reload with identical outputs and weights.
"""

import os

import keras
import numpy as np


def _as_model(layer, input_shape):
    inputs = keras.Input(shape=input_shape[1:], batch_size=None)
    return keras.Model(inputs, layer(inputs))


def check_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(layer)
    assert revived.get_config() == config


def check_symbolic_and_eager(layer_factory, input_data, expected_output_shape):
    symbolic_input = keras.KerasTensor(input_data.shape, dtype="float32")
    symbolic_output = layer_factory()(symbolic_input)
    assert tuple(symbolic_output.shape) == tuple(expected_output_shape)
    eager_output = layer_factory()(input_data)
    assert tuple(eager_output.shape) == tuple(expected_output_shape)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(eager_output)))


def check_weight_counts(layer, input_data, num_trainable, num_non_trainable):
    layer(input_data)
    assert len(layer.trainable_weights) == num_trainable, [w.path for w in layer.trainable_weights]
    assert len(layer.non_trainable_weights) == num_non_trainable, [
        w.path for w in layer.non_trainable_weights
    ]


def check_fit_step(layer_factory, input_data):
    model = _as_model(layer_factory(), input_data.shape)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    target = np.zeros_like(keras.ops.convert_to_numpy(model(input_data)))
    history = model.fit(input_data, target, batch_size=input_data.shape[0], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def check_mixed_precision(layer_factory, input_data, policy):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        layer = layer_factory()
        output = layer(input_data, training=True)
        compute_dtype = keras.mixed_precision.dtype_policy().compute_dtype
        assert keras.backend.standardize_dtype(output.dtype) == compute_dtype
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(output).astype("float32")))
        for weight in layer.weights:
            assert weight.dtype == "float32", weight.path
        return keras.ops.convert_to_numpy(output).astype("float32")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def check_save_and_reload(layer_factory, input_data, tmp_path):
    model = _as_model(layer_factory(), input_data.shape)
    model(input_data, training=True)  # move any moving-average state off its init
    path = os.path.join(str(tmp_path), "layer.keras")
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(input_data)),
        keras.ops.convert_to_numpy(reloaded(input_data)),
    )
    original_weights = {w.path: w.numpy() for w in model.weights}
    for weight in reloaded.weights:
        np.testing.assert_array_equal(weight.numpy(), original_weights[weight.path])
    return reloaded


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights,
    tmp_path,
):
    """Runs every generic check on `layer_cls(**init_kwargs)`."""

    def layer_factory():
        return layer_cls(**init_kwargs)

    check_config_round_trip(layer_factory())
    check_symbolic_and_eager(layer_factory, input_data, expected_output_shape)
    check_weight_counts(
        layer_factory(),
        input_data,
        expected_num_trainable_weights,
        expected_num_non_trainable_weights,
    )
    check_fit_step(layer_factory, input_data)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        check_mixed_precision(layer_factory, input_data, policy)
    check_save_and_reload(layer_factory, input_data, tmp_path)


def check_inference_gradients_equal(layer, reference, inputs, rtol, atol):
    """d sum(y^2) / d(inputs, trainable weights) in inference mode: `layer` as `reference` (TF)."""
    import tensorflow as tf

    gradients = []
    for candidate in (layer, reference):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(candidate(inputs, training=False) ** 2)
        gradients.append(tape.gradient(loss, [inputs, *candidate.trainable_weights]))
    for actual, expected in zip(*gradients):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=rtol, atol=atol)


def traced_op_types(layer, shape, training):
    """The TensorFlow op types `layer(x, training=training)` traces for an input of `shape`.

    autograph=False: traced as written (AutoGraph would re-read the lambda's source file).
    """
    import tensorflow as tf

    call = tf.function(lambda v: layer(v, training=training), autograph=False)
    graph = call.get_concrete_function(tf.TensorSpec(shape)).graph
    return {op.type for op in graph.get_operations()}
