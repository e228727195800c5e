import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.layers import EMALayer, EMAUnit
from tests.layer_testing import check_mixed_precision, run_layer_test
from tests.layers.em_reference import reference_em, reference_update

BATCH, HEIGHT, WIDTH, CHANNELS, NUM_BASES = 4, 6, 5, 16, 8


def random_features(seed=0, batch=BATCH):
    return np.random.default_rng(seed).normal(size=(batch, HEIGHT, WIDTH, CHANNELS)).astype(
        "float32"
    )


def test_initial_bases_are_unit_columns_and_seeded():
    layer = EMALayer(num_bases=NUM_BASES, seed=7)
    layer.build((None, HEIGHT, WIDTH, CHANNELS))
    bases = layer.bases.numpy()
    assert bases.shape == (CHANNELS, NUM_BASES)
    assert layer.bases.dtype == "float32" and not layer.bases.trainable
    np.testing.assert_allclose(np.linalg.norm(bases, axis=0), 1.0, rtol=1e-6)
    again = EMALayer(num_bases=NUM_BASES, seed=7)
    again.build((None, HEIGHT, WIDTH, CHANNELS))
    np.testing.assert_array_equal(again.bases.numpy(), bases)


@pytest.mark.parametrize("normalize_average", [False, True])
def test_output_and_update_match_numpy_reference(normalize_average):
    layer = EMALayer(num_bases=NUM_BASES, normalize_average=normalize_average, seed=3)
    inputs = random_features()
    layer.build(inputs.shape)
    initial_bases = layer.bases.numpy().copy()

    expected_output, per_image_bases = reference_em(inputs, initial_bases)
    output = layer(inputs, training=True)

    np.testing.assert_allclose(output.numpy(), expected_output, atol=1e-5)
    expected_bases = reference_update(
        initial_bases, per_image_bases, normalize=normalize_average
    )
    np.testing.assert_allclose(layer.bases.numpy(), expected_bases, atol=1e-5)
    # The update really moved the bases (the check above is not vacuous).
    assert np.abs(layer.bases.numpy() - initial_bases).max() > 1e-3


def test_inference_leaves_bases_untouched():
    layer = EMALayer(num_bases=NUM_BASES, seed=3)
    inputs = random_features()
    layer(inputs, training=False)
    before = layer.bases.numpy().copy()
    output = layer(inputs, training=False)
    np.testing.assert_array_equal(layer.bases.numpy(), before)
    np.testing.assert_allclose(output.numpy(), reference_em(inputs, before)[0], atol=1e-5)
    layer(inputs)  # training=None means inference
    np.testing.assert_array_equal(layer.bases.numpy(), before)


def test_frozen_layer_does_not_update_bases():
    layer = EMALayer(num_bases=NUM_BASES, seed=3)
    inputs = random_features()
    layer.build(inputs.shape)
    before = layer.bases.numpy().copy()
    layer.trainable = False
    layer(inputs, training=True)
    np.testing.assert_array_equal(layer.bases.numpy(), before)


def test_no_gradient_reaches_the_input():
    layer = EMALayer(num_bases=NUM_BASES, seed=3)
    inputs = tf.constant(random_features())
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        output = layer(inputs, training=True)
        loss = tf.reduce_sum(output * output)
    gradient = tape.gradient(loss, inputs)
    assert gradient is None or np.all(gradient.numpy() == 0.0)


def test_works_inside_tf_function_like_eager():
    eager_layer = EMALayer(num_bases=NUM_BASES, seed=5)
    graph_layer = EMALayer(num_bases=NUM_BASES, seed=5)
    inputs = random_features()

    @tf.function
    def step(x):
        return graph_layer(x, training=True)

    np.testing.assert_allclose(
        step(inputs).numpy(), eager_layer(inputs, training=True).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(graph_layer.bases.numpy(), eager_layer.bases.numpy(), atol=1e-7)


def test_dynamic_spatial_size_in_graph():
    layer = EMALayer(num_bases=NUM_BASES, seed=5)
    layer.build((None, None, None, CHANNELS))
    function = tf.function(
        lambda x: layer(x), input_signature=[tf.TensorSpec((None, None, None, CHANNELS))]
    )
    for height, width in ((4, 7), (9, 3)):
        inputs = np.random.default_rng(height).normal(size=(2, height, width, CHANNELS))
        inputs = inputs.astype("float32")
        expected = reference_em(inputs, layer.bases.numpy())[0]
        np.testing.assert_allclose(function(inputs).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs", [{"num_bases": 0}, {"num_iterations": 0}, {"momentum": 1.5}, {"epsilon": 0.0}]
)
def test_invalid_arguments_are_rejected_by_name(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        EMALayer(**kwargs)


def _probe_model(num_bases=NUM_BASES, seed=11):
    """Input -> EMALayer -> trainable 1x1 conv, so `fit` has something to train."""
    inputs = keras.Input((HEIGHT, WIDTH, CHANNELS))
    ema = EMALayer(num_bases=num_bases, seed=seed, name="ema")
    outputs = keras.layers.Conv2D(2, 1, name="head")(ema(inputs))
    return keras.Model(inputs, outputs), ema


def _reference_bases_after_fit(initial_bases, inputs, batch_size, steps):
    bases = initial_bases.astype(np.float64)
    for step in range(steps):
        batch = inputs[step * batch_size : (step + 1) * batch_size]
        _, per_image_bases = reference_em(batch, bases)
        bases = reference_update(bases, per_image_bases)
    return bases


def test_mirrored_replicas_hold_identical_global_bases(mirrored_strategy):
    steps, global_batch = 3, 4
    inputs = random_features(seed=21, batch=steps * global_batch)
    targets = np.zeros((len(inputs), HEIGHT, WIDTH, 2), "float32")
    with mirrored_strategy.scope():
        model, ema = _probe_model()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    initial_bases = ema.bases.numpy().copy()
    model.fit(inputs, targets, batch_size=global_batch, epochs=1, shuffle=False, verbose=0)

    replica_values = [v.numpy() for v in ema.bases.value.values]
    assert len(replica_values) == 2
    np.testing.assert_array_equal(replica_values[0], replica_values[1])
    expected = _reference_bases_after_fit(initial_bases, inputs, global_batch, steps)
    np.testing.assert_allclose(replica_values[0], expected, atol=1e-5)
    # Each replica alone would have drifted elsewhere: the test can tell.
    first_halves = np.concatenate(
        [inputs[s * global_batch : s * global_batch + global_batch // 2] for s in range(steps)]
    )
    local_only = _reference_bases_after_fit(initial_bases, first_halves, global_batch // 2, steps)
    assert np.abs(local_only - replica_values[0]).max() > 1e-3


def test_replicas_with_different_data_agree_under_strategy_run(mirrored_strategy):
    with mirrored_strategy.scope():
        layer = EMALayer(num_bases=NUM_BASES, seed=2)
        layer.build((None, HEIGHT, WIDTH, CHANNELS))
    initial_bases = layer.bases.numpy().copy()
    # Replica 0 gets 1 image, replica 1 gets 3: the global mean weights images, not replicas.
    per_replica = [random_features(seed=30, batch=1), random_features(seed=31, batch=3)]
    distributed = mirrored_strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(per_replica[context.replica_id_in_sync_group])
    )
    mirrored_strategy.run(tf.function(lambda x: layer(x, training=True)), args=(distributed,))

    replica_values = [v.numpy() for v in layer.bases.value.values]
    np.testing.assert_array_equal(replica_values[0], replica_values[1])
    _, per_image_bases = reference_em(np.concatenate(per_replica), initial_bases)
    np.testing.assert_allclose(
        replica_values[0], reference_update(initial_bases, per_image_bases), atol=1e-5
    )


def test_jit_compiled_fit_updates_bases_like_plain_fit():
    steps, batch_size = 2, 2
    inputs = random_features(seed=40, batch=steps * batch_size)
    targets = np.zeros((len(inputs), HEIGHT, WIDTH, 2), "float32")
    results = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(99)
        model, ema = _probe_model()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit_compile)
        model.fit(inputs, targets, batch_size=batch_size, shuffle=False, verbose=0)
        results.append(ema.bases.numpy())
    np.testing.assert_allclose(results[1], results[0], atol=1e-6)


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 3e-2)])
def test_mixed_precision_keeps_float32_state_and_close_output(policy, tolerance):
    inputs = random_features(seed=50)
    reference_layer = EMALayer(num_bases=NUM_BASES, seed=4)
    expected = reference_layer(inputs, training=True).numpy()

    def factory():
        return EMALayer(num_bases=NUM_BASES, seed=4)

    output = check_mixed_precision(factory, inputs, policy)
    np.testing.assert_allclose(output, expected, atol=tolerance)


def test_ema_layer_generic_checks(tmp_path):
    run_layer_test(
        EMALayer,
        {"num_bases": NUM_BASES, "num_iterations": 2, "seed": 1},
        random_features(),
        expected_output_shape=(BATCH, HEIGHT, WIDTH, CHANNELS),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=1,
        tmp_path=tmp_path,
    )


def test_ema_unit_generic_checks(tmp_path):
    run_layer_test(
        EMAUnit,
        {"num_bases": NUM_BASES, "seed": 1},
        random_features(),
        expected_output_shape=(BATCH, HEIGHT, WIDTH, CHANNELS),
        # output_conv kernel, BN gamma and beta
        expected_num_trainable_weights=3,
        # input kernel and bias, bases, BN moving mean and variance
        expected_num_non_trainable_weights=5,
        tmp_path=tmp_path,
    )


def test_ema_unit_input_projection_stays_frozen():
    unit = EMAUnit(num_bases=NUM_BASES, seed=1)
    unit.build((None, HEIGHT, WIDTH, CHANNELS))
    unit.trainable = False
    unit.trainable = True
    trainable_paths = {w.path for w in unit.trainable_weights}
    assert not any("input_" in path for path in trainable_paths)
    assert {w.path for w in unit.non_trainable_weights} >= {
        unit.input_kernel.path,
        unit.input_bias.path,
    }


def test_ema_unit_gradients_reach_output_conv_and_residual_only():
    unit = EMAUnit(num_bases=NUM_BASES, seed=1)
    inputs = tf.constant(random_features(seed=60))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        # Inference mode, so the bases do not move and the branch can be recomputed below.
        output = unit(inputs, training=False)
        loss = tf.reduce_sum(tf.sin(output))
    gradients = tape.gradient(loss, unit.trainable_weights)
    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in gradients)
    frozen = tape.gradient(loss, [unit.input_kernel.value, unit.input_bias.value])
    assert all(g is None or np.all(g.numpy() == 0.0) for g in frozen)

    # The input's gradient flows through the residual only: it equals the
    # gradient of relu(a + x) with `a` (the attention branch) held constant.
    input_gradient = tape.gradient(loss, inputs).numpy()
    branch = unit.output_norm(
        unit.output_conv(
            tf.nn.relu(
                unit.em_attention(
                    tf.nn.conv2d(inputs, unit.input_kernel.value, 1, "VALID")
                    + unit.input_bias.value
                )
            )
        ),
        training=False,
    )
    pre_activation = branch.numpy() + inputs.numpy()
    expected = np.cos(np.maximum(pre_activation, 0.0)) * (pre_activation > 0)
    np.testing.assert_allclose(input_gradient, expected, atol=1e-5)
