"""tf.distribute strategies by name, including Mirrored over logical CPUs."""

import tensorflow as tf

from ema_keras.training.errors import SettingsError

STRATEGIES = ("one_device", "mirrored", "multi_worker", "tpu")


def configure_logical_cpus(count):
    """Splits the first CPU into `count` logical devices (before TF initialises).

    Lets MirroredStrategy run real replicas on a machine without accelerators.
    Raises a clear error when TensorFlow already initialised its devices with
    fewer logical CPUs.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        if len(tf.config.get_logical_device_configuration(cpus[0]) or []) < count:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
            )
    except RuntimeError as error:
        logical = tf.config.list_logical_devices("CPU")
        if len(logical) < count:
            raise RuntimeError(
                f"Cannot create {count} logical CPU devices: TensorFlow is already initialised "
                f"with {len(logical)}. Create the strategy before running any TensorFlow op."
            ) from error
    return [device.name for device in tf.config.list_logical_devices("CPU")][:count]


def make_strategy(name, tpu_address=None, num_cpu_replicas=2):
    """Returns the tf.distribute strategy called `name` (one of STRATEGIES).

    - one_device: the first GPU if any, else the CPU.
    - mirrored: all local GPUs; without GPUs, `num_cpu_replicas` logical CPUs
      (so the same code path, all-reduce included, runs on a laptop or in CI).
    - multi_worker: MultiWorkerMirroredStrategy configured from TF_CONFIG.
    - tpu: TPUStrategy on `tpu_address` ("" or "local" for a TPU VM).
    """
    if name not in STRATEGIES:
        raise SettingsError(f"--strategy must be one of {STRATEGIES}, got {name!r}.")
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy()
    # Logical CPUs share one memory: reducing on one device is as fast as a
    # collective ring there, and it does not use collective instance keys,
    # which collide when a process builds several strategies over the same
    # devices (e.g. a test session) and abort every later all-reduce.
    return tf.distribute.MirroredStrategy(
        configure_logical_cpus(num_cpu_replicas),
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def check_jit_compile(strategy, jit_compile, strategy_name):
    """Refuses XLA for a step that spans several replicas on CPUs or GPUs.

    Keras 3 compiles the train step of all replicas (`strategy.run` included)
    as one XLA program, and XLA places a program on one device, so the step
    fails on its first run (keras-team/keras#19005). A TPU compiles each
    replica's step itself and is not concerned.
    """
    if not jit_compile or strategy.num_replicas_in_sync == 1:
        return
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return
    raise SettingsError(
        f"--jit_compile cannot run under --strategy {strategy_name} with "
        f"{strategy.num_replicas_in_sync} replicas (Keras compiles all replicas' step as one "
        "XLA program, which XLA places on one device: keras-team/keras#19005); use "
        f"--strategy {strategy_name} without --jit_compile, or --strategy one_device --jit_compile."
    )


def is_chief(strategy):
    """True on the worker that writes checkpoints, exports and logs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)
