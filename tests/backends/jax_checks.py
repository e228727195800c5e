"""The JAX-backend checks, run as a program by `test_jax.py` (the test session is TensorFlow).

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python -m tests.backends.jax_checks WORK_DIR

WORK_DIR holds `inputs.npy` and, optionally, `tensorflow.keras` (a model saved
on TensorFlow). The program checks the EM layer against the NumPy reference,
builds, runs, fits one step and saves the tiny preset, reads the TensorFlow
file, checks one DataParallel training step on two devices. It writes
`jax.keras` with its outputs (`jax_outputs.npy`) and the TensorFlow file's
outputs on JAX (`tensorflow_outputs_on_jax.npy`), and prints one line per check.
"""

import os
import sys

import keras
import numpy as np

import ema_keras

# Checked first thing: `import ema_keras` (with its layers and models) on JAX must not start TF.
TENSORFLOW_AT_IMPORT = "tensorflow" in sys.modules
# What a trained file names besides its layers, registered on every backend: Keras only.
KERAS_ONLY = {
    "ema_keras.data", "ema_keras.data.dataset_spec", "ema_keras.data.errors", "ema_keras.data.voc",
    "ema_keras.training", "ema_keras.losses", "ema_keras.metrics",
    "ema_keras.optimizers", "ema_keras.schedules",
}  # fmt: skip
TENSORFLOW_ONLY_AT_IMPORT = sorted(
    name
    for name in sys.modules
    if name.split(".")[:2]
    in (["ema_keras", "data"], ["ema_keras", "training"], ["ema_keras", "inference"],
        ["ema_keras", "export"])
    and name not in KERAS_ONLY
)
from ema_keras.layers import EMALayer
from ema_keras.models import EMANetImageSegmenter
from tests.backends.layer_checks import check_em_layer_matches_reference
from tests.backends.optimizer_checks import check_parameter_groups_follow_the_official_rules
from tests.layers.em_reference import reference_em, reference_update


def check_tiny_preset(work_dir, inputs):
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3, seed=0)
    outputs = model.predict(inputs, verbose=0)
    assert outputs.shape == inputs.shape[:3] + (3,), outputs.shape
    labels = np.random.default_rng(1).integers(0, 3, size=inputs.shape[:3])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    bases = model.backbone.get_layer("ema_unit").em_attention.bases
    before = keras.ops.convert_to_numpy(bases).copy()
    history = model.fit(inputs, labels, batch_size=len(inputs), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.abs(keras.ops.convert_to_numpy(bases) - before).max() > 0  # bases moved
    path = os.path.join(work_dir, "jax.keras")
    model.save(path)
    outputs = model.predict(inputs, verbose=0)
    np.save(os.path.join(work_dir, "jax_outputs.npy"), outputs)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(inputs, verbose=0), outputs, rtol=0, atol=0)
    print("tiny preset builds, predicts, fits one step, saves and reloads")


def check_tensorflow_file(work_dir, inputs):
    path = os.path.join(work_dir, "tensorflow.keras")
    if not os.path.exists(path):
        return
    model = keras.models.load_model(path)
    outputs = model.predict(inputs, verbose=0)
    np.save(os.path.join(work_dir, "tensorflow_outputs_on_jax.npy"), outputs)
    print("the TensorFlow file loads and predicts")


def check_data_parallel_bases():
    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == 2, devices
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    # Each device's half of the batch has a different mean, so a per-device
    # update would differ from the global one.
    inputs = np.random.default_rng(2).normal(size=(4, 6, 5, 16)).astype("float32")
    inputs[2:] = 3.0 * inputs[2:] + 1.0
    targets = np.zeros((4, 6, 5, 1), "float32")
    layer = EMALayer(num_bases=8, seed=3, name="em")
    model = keras.Sequential(
        [keras.Input((6, 5, 16)), layer, keras.layers.Conv2D(1, 1, name="head")]
    )
    initial_bases = keras.ops.convert_to_numpy(layer.bases).copy()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(inputs, targets, batch_size=4, epochs=1, shuffle=False, verbose=0)
    expected = reference_update(initial_bases, reference_em(inputs, initial_bases)[1])
    local = reference_update(initial_bases, reference_em(inputs[:2], initial_bases)[1])
    assert np.abs(expected - local).max() > 1e-3  # global and per-device updates differ
    shards = [np.asarray(shard.data) for shard in layer.bases.value.addressable_shards]
    assert len(shards) == 2, len(shards)
    for shard in shards:
        np.testing.assert_allclose(shard, expected, atol=1e-5)
    np.testing.assert_array_equal(shards[0], shards[1])
    keras.distribution.set_distribution(None)
    print("DataParallel on 2 devices: bases equal the global-batch reference on both")


def main(work_dir):
    assert keras.backend.backend() == "jax" and ema_keras.backend.BACKEND == "jax"
    if TENSORFLOW_AT_IMPORT or TENSORFLOW_ONLY_AT_IMPORT:
        print(f"import ema_keras loaded TensorFlow modules: {TENSORFLOW_ONLY_AT_IMPORT}")
    else:
        print("import ema_keras leaves TensorFlow alone")
    inputs = np.load(os.path.join(work_dir, "inputs.npy"))
    check_em_layer_matches_reference()
    check_tiny_preset(work_dir, inputs)
    check_parameter_groups_follow_the_official_rules()
    check_data_parallel_bases()
    check_tensorflow_file(work_dir, inputs)


if __name__ == "__main__":
    main(sys.argv[1])
