"""Session-wide test setup.

Two logical CPU devices are configured before TensorFlow initialises, so the
tf.distribute tests can run a real MirroredStrategy with two replicas on a
machine without accelerators. Tests that do not ask for a strategy still run on
the default (single-device) strategy.
"""

import os

from tests.tf_log_level import TESTS_TF_LOG_LEVEL

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TESTS_TF_LOG_LEVEL)

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import ema_keras  # noqa: E402,F401  (registers the custom classes)

NUM_LOGICAL_CPUS = 2

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
)


def pytest_collection_modifyitems(config, items):
    """Files holding a slow test first (each file's order kept): the workers start on the
    long files and the short ones fill in at the end, instead of one long file left last."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Every test starts from float32, a fresh name scope and seeded RNGs."""
    keras.mixed_precision.set_dtype_policy("float32")
    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.fixture
def mirrored_strategy():
    """Two replicas on the two logical CPUs, built as the training recipes build it."""
    from ema_keras.training.strategy import make_strategy

    return make_strategy("mirrored", num_cpu_replicas=NUM_LOGICAL_CPUS)
