"""SyncBatchNormalization: Keras' synchronised statistics, traced without graph walks."""

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import op_selector

from ema_keras.layers import SyncBatchNormalization
from tests.layer_testing import check_inference_gradients_equal, traced_op_types
from tests.replica_testing import replica_copies


def _per_replica(strategy, arrays):
    return strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(arrays[context.replica_id_in_sync_group])
    )


def _train_step_results(strategy, layer_class, inputs, upstream):
    """Outputs, input gradients and moving statistics of one replica-local training step."""
    with strategy.scope():
        layer = layer_class(synchronized=True, momentum=0.5, epsilon=1e-5)
        layer.build(inputs[0].shape)

    @tf.function
    def step(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * dy)
        gradients = tape.gradient(loss, [x, layer.gamma, layer.beta])
        return y, gradients[0], gradients[1], gradients[2]

    arguments = (_per_replica(strategy, inputs), _per_replica(strategy, upstream))
    outputs = strategy.run(step, args=arguments)
    results = [np.concatenate([r.numpy() for r in strategy.experimental_local_results(o)])
               for o in outputs[:2]]
    results += [strategy.experimental_local_results(o)[0].numpy() for o in outputs[2:]]
    results += [replica_copies(layer.moving_mean)[1], replica_copies(layer.moving_variance)[1]]
    return results


def test_equals_keras_synchronized_batch_norm_across_replicas(mirrored_strategy):
    """Replicas fed different data: same outputs, gradients and statistics as Keras'."""
    rng = np.random.default_rng(0)
    inputs = [rng.normal(loc=i, size=(2, 5, 5, 3)).astype("float32") for i in range(2)]
    upstream = [rng.normal(size=(2, 5, 5, 3)).astype("float32") for _ in range(2)]
    ours = _train_step_results(mirrored_strategy, SyncBatchNormalization, inputs, upstream)
    theirs = _train_step_results(mirrored_strategy, keras.layers.BatchNormalization, inputs,
                                 upstream)
    names = ["output", "input gradient", "gamma gradient", "beta gradient", "moving mean",
             "moving variance"]
    for name, mine, reference in zip(names, ours, theirs):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6, err_msg=name)
    # The statistics are the global batch's, not a replica's own.
    everything = np.concatenate(inputs).reshape(-1, 3)
    np.testing.assert_allclose(ours[4], 0.5 * everything.mean(0), rtol=1e-5)
    # And the input gradient is that of one BatchNorm over the concatenated batch.
    x = tf.constant(np.concatenate(inputs))
    single = keras.layers.BatchNormalization(momentum=0.5, epsilon=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(single(x, training=True) * np.concatenate(upstream))
    np.testing.assert_allclose(ours[1], tape.gradient(loss, x).numpy(), rtol=1e-4, atol=1e-5)


def test_tracing_walks_no_graph_per_layer(mirrored_strategy, monkeypatch):
    """Keras' synchronised BN walks the other replica's graph at every layer; ours does not.

    TensorFlow walks the graph backwards from a `custom_gradient`'s outputs
    when it traces one; counted here are the ops those walks visit from the
    BatchNorm layers (Keras' optimizer does one walk per step of its own).
    """
    walked = []
    walk = op_selector.get_backward_walk_ops

    def counting_walk(seed_ops, *args, **kwargs):
        ops = walk(seed_ops, *args, **kwargs)
        seeds = [getattr(seed, "op", seed) for seed in tf.nest.flatten(seed_ops)]
        if any("batch_normalization" in seed.name for seed in seeds):
            walked.append(len(ops))
        return ops

    monkeypatch.setattr(op_selector, "get_backward_walk_ops", counting_walk)

    def ops_walked(layer_class, depth):
        walked.clear()
        with mirrored_strategy.scope():
            inputs = keras.Input((8, 8, 4))
            x = inputs
            for _ in range(depth):
                x = keras.layers.Conv2D(4, 3, padding="same")(x)
                x = layer_class(synchronized=True)(x)
            model = keras.Model(inputs, x)
            model.compile(optimizer="sgd", loss="mse")
        data = tf.data.Dataset.from_tensors((tf.ones((4, 8, 8, 4)),) * 2).repeat()
        model.fit(data, steps_per_epoch=1, epochs=1, shuffle=False, verbose=0)
        return sum(walked)

    keras_own = [ops_walked(keras.layers.BatchNormalization, depth) for depth in (6, 12)]
    ours = [ops_walked(SyncBatchNormalization, depth) for depth in (6, 12)]
    assert keras_own[1] > 3 * keras_own[0]  # quadratic in depth
    assert ours[1] == 2 * ours[0]  # linear: a fixed handful of ops per layer
    assert ours[1] < 12 * 2 * 40 and keras_own[1] > 50 * ours[1]


def _fixed_statistics_pair(scale=True, center=True, dtype=None):
    """Keras' BatchNormalization and ours, same weights and non-trivial moving statistics."""
    arguments = dict(scale=scale, center=center, epsilon=1e-3, dtype=dtype)
    ours = SyncBatchNormalization(**arguments)
    reference = keras.layers.BatchNormalization(**arguments)
    rng = np.random.default_rng(3)
    for layer in (ours, reference):
        layer.build((None, 5, 6, 4))
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.weights]
    weights[-1] = np.abs(weights[-1]) + 0.5  # the moving variance
    for layer in (ours, reference):
        layer.set_weights(weights)
    inputs = tf.constant(rng.normal(size=(2, 5, 6, 4)).astype("float32"))
    return ours, reference, inputs


def test_fixed_statistics_equal_keras_as_one_fused_op():
    for scale, center in ((True, True), (False, True), (True, False)):
        ours, reference, x = _fixed_statistics_pair(scale, center)
        expected = reference(x, training=False).numpy()
        np.testing.assert_allclose(ours(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
        ours.trainable = reference.trainable = False  # frozen: moving statistics also in training
        np.testing.assert_allclose(ours(x, training=True).numpy(), expected, rtol=1e-5, atol=1e-5)
    ours, _, x = _fixed_statistics_pair()
    assert "FusedBatchNormV3" in traced_op_types(ours, x.shape, training=False)
    assert "FusedBatchNormV3" not in traced_op_types(ours, x.shape, training=True)


def test_fixed_statistics_in_bfloat16_and_gradients_equal_keras():
    ours, reference, x = _fixed_statistics_pair(dtype="mixed_bfloat16")
    y, expected = ours(x, training=False), reference(x, training=False)
    assert y.dtype == expected.dtype == tf.bfloat16
    np.testing.assert_allclose(
        tf.cast(y, tf.float32).numpy(), tf.cast(expected, tf.float32).numpy(), rtol=1e-2, atol=1e-2
    )
    check_inference_gradients_equal(*_fixed_statistics_pair(), rtol=1e-4, atol=1e-4)
