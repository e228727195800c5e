"""What training does differently on each Keras backend: the one place that decides it.

The recipe is the same program everywhere: tf.data input, `model.fit`, the
same callbacks and outputs. What differs is how the step is spread over
devices and how the training state is checkpointed:

- TensorFlow: the tf.distribute strategies of `strategy.py` (one_device,
  mirrored, multi_worker, tpu) and `tf.train` checkpoints.
- JAX: `keras.distribution` in one process: one_device runs on the first
  device, mirrored is `DataParallel` over every local device (each batch is one
  global array split along the batch, so BatchNorm statistics and the EMA bases
  update are the global batch's). The step is always XLA-compiled (`jit`).
  Checkpoints are `ArrayCheckpoint` files.
- PyTorch: one device, eager steps, `ArrayCheckpoint` files.

Whatever a backend cannot do raises `SettingsError` from `check_backend`
(part of `config.check_settings`, the programs' check), before anything is
read or written.
"""

import contextlib
import dataclasses
from typing import Any, Callable

import keras

from ema_keras.training import checkpointing
from ema_keras.training import strategy as strategies
from ema_keras.training.errors import SettingsError

BACKEND = keras.backend.backend()

# The --strategy values each backend runs.
STRATEGIES = {
    "tensorflow": strategies.STRATEGIES,
    "jax": ("one_device", "mirrored"),
    "torch": ("one_device",),
}


def check_backend(config, backend=BACKEND):
    """Refuses, naming the flag, what `config` asks and `backend` cannot do.

    `config.check_settings` runs it with its other checks; `make_execution`
    runs it again, for a config that did not pass there.
    """
    if backend not in STRATEGIES:
        raise SettingsError(
            f"KERAS_BACKEND={backend} cannot run the training recipe; use tensorflow, jax or torch."
        )
    if config.strategy not in STRATEGIES[backend]:
        raise SettingsError(
            f"--strategy {config.strategy} needs the TensorFlow backend (tf.distribute); "
            f"KERAS_BACKEND={backend} runs --strategy {' or '.join(STRATEGIES[backend])}."
        )
    if backend != "tensorflow" and config.tpu_address:
        raise SettingsError(f"--tpu_address needs --strategy tpu on TensorFlow, not {backend}.")
    if backend == "torch" and config.jit_compile:
        raise SettingsError(
            "--jit_compile is XLA, which KERAS_BACKEND=torch does not run (it would be "
            "torch.compile); drop the flag, or train on jax (always XLA) or tensorflow."
        )
    return config


@dataclasses.dataclass
class Execution:
    """Where and how `fit` runs: what the trainer needs to know of the backend.

    `active()` is held for the whole training (JAX's distribution must be set
    while the model is built and while it trains); `scope()` is held while
    the model, its optimizer and its checkpoint are built (the tf.distribute
    strategy's scope). `distribute(dataset_fn)` turns a function of a
    `tf.distribute.InputContext` (or None) into `fit`'s training input.
    """

    num_replicas: int
    chief: bool
    worker_id: int
    jit_compile: Any
    scope: Callable[[], Any]
    active: Callable[[], Any]
    distribute: Callable[[Callable], Any]
    strategy: Any = None  # the tf.distribute strategy, on TensorFlow

    def make_checkpoint(self, model, directory):
        if self.strategy is not None:
            return checkpointing.TrainingCheckpoint(
                model, directory, chief=self.chief, worker_id=self.worker_id
            )
        return checkpointing.ArrayCheckpoint(model, directory)


def make_execution(config, backend=BACKEND):
    """The `Execution` of `config.strategy` on `backend` (settings checked)."""
    check_backend(config, backend)
    if backend == "tensorflow":
        return _tensorflow_execution(config)
    _keep_tensorflow_to_the_cpu()
    distribution = None
    if config.strategy == "mirrored":
        distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    num_replicas = len(distribution.device_mesh.devices.flat) if distribution else 1
    if config.global_batch_size % num_replicas:
        raise SettingsError(
            f"--global_batch_size {config.global_batch_size} must be a multiple of the "
            f"{num_replicas} devices --strategy {config.strategy} splits it over."
        )
    return Execution(
        num_replicas=num_replicas,
        chief=True,
        worker_id=0,
        # On JAX the step is XLA whatever the flag says (Keras' "auto"); torch steps are eager.
        jit_compile=backend == "jax",
        scope=contextlib.nullcontext,
        active=distribution.scope if distribution else contextlib.nullcontext,
        distribute=lambda dataset_fn: dataset_fn(None),
    )


def _tensorflow_execution(config):
    strategy = strategies.make_strategy(config.strategy, tpu_address=config.tpu_address)
    strategies.check_jit_compile(strategy, config.jit_compile, config.strategy)
    resolver = getattr(strategy, "cluster_resolver", None)
    worker_id = resolver.task_id if resolver is not None and resolver.task_id is not None else 0
    return Execution(
        num_replicas=strategy.num_replicas_in_sync,
        chief=strategies.is_chief(strategy),
        worker_id=worker_id,
        jit_compile=config.jit_compile,
        scope=strategy.scope,
        active=contextlib.nullcontext,
        distribute=strategy.distribute_datasets_from_function,
        strategy=strategy,
    )


def _keep_tensorflow_to_the_cpu():
    """tf.data feeds another backend from the CPU: TensorFlow must not take the GPUs' memory."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already initialised: too late, and nothing to undo
        pass


def whole_batches(dataset, num_replicas):
    """`dataset`'s (image, label) batches regrouped so that each splits evenly over the devices.

    `DataParallel` splits every batch along its first axis, so a last batch
    smaller than the device count cannot run. Blank images whose labels are all
    IGNORE_LABEL fill it: the mIoU ignores their pixels, and so does the
    loss of the batch they join.
    """
    if num_replicas == 1:
        return dataset
    import tensorflow as tf

    from ema_keras.data.voc import IGNORE_LABEL

    examples = dataset.unbatch()
    image_spec, label_spec = examples.element_spec
    blank = tf.data.Dataset.from_tensors(
        (tf.zeros(image_spec.shape, image_spec.dtype), tf.fill(label_spec.shape, IGNORE_LABEL))
    )
    count = int(examples.reduce(0, lambda count, _: count + 1))
    fill = -count % num_replicas
    batches = examples.concatenate(blank.repeat(fill)).batch(num_replicas)
    # Known length, as before: Keras then ends each validation without a warning.
    return batches.apply(tf.data.experimental.assert_cardinality((count + fill) // num_replicas))
