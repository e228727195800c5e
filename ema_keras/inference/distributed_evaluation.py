"""Evaluation on every device and every machine: whole images shared out, counts summed.

    replicas = tensorflow_replicas(strategy)   # tf.distribute: one_device, mirrored, multi_worker
    replicas = jax_replicas()                  # keras.distribution's devices, all local ones
    result = evaluate_on_replicas(model, examples, replicas, num_classes=21, flip=True)

With N replicas in all (every worker's devices), replica r takes images r, r + N,
r + 2N, ... of the split, reads them from disk itself and predicts each whole, at
its own size, with its own copy of the model: single scale, multi-scale + flip or
sliding window, as `evaluation.evaluate` does on one device. Each replica adds up
its images' integer confusion matrices; the replicas' matrices are added in the
process, then across workers by the strategy's all-reduce (int64), so the result
is the one-device result exactly, whatever N and however many images each gets.

Why not a batch split over the devices (`strategy.run` on a distributed dataset,
`DataParallel`)? Images of different sizes do not stack into one batch, and
padding them would change what the model sees (the EMA unit attends over every
pixel). So each local device runs its share one image at a time, in a thread of
its own (TensorFlow and JAX compute outside the GIL), and only the counts meet.
"""

import concurrent.futures
import contextlib
import dataclasses
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ema_keras.inference.evaluation import (
    evaluation_result,
    evaluation_settings,
    score_examples,
)


@dataclasses.dataclass(frozen=True)
class EvaluationReplicas:
    """Where an evaluation runs: this process's devices and their place among all replicas.

    `devices[i]` is the local replica whose global index is `replica_ids[i]`
    (0..num_replicas-1 over every worker); `copy_model(model, device)` puts a
    copy of the model's weights there, `device_scope(device)` is held while it
    predicts, and `all_reduce(vectors)` sums the local replicas' int64 vectors
    across every worker (each worker gets the sum).
    """

    name: str
    devices: Sequence[Any]
    replica_ids: Sequence[int]
    num_replicas: int
    copy_model: Callable[[Any, Any], Any]
    device_scope: Callable[[Any], Any]
    all_reduce: Callable[[Sequence[np.ndarray]], np.ndarray]
    chief: bool = True  # the worker that writes the results

    def describe(self):
        """`--strategy mirrored: 2 replicas`, and how many are here when there are workers."""
        count = f"{self.num_replicas} replica{'s' if self.num_replicas > 1 else ''}"
        if self.num_replicas == len(self.devices):
            return f"{self.name}: {count}"
        return f"{self.name}: {count} over all workers, {len(self.devices)} here"


def _copy_keras_model(model):
    if not isinstance(model, keras.Model):
        return model  # any other callable runs as it is
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def tensorflow_replicas(strategy, *, name="tf.distribute", chief=True):
    """The replicas of a tf.distribute `strategy` (one device, mirrored, multi-worker).

    Each local replica device gets a copy of the model made under
    `tf.device`, so its weights live there; the counts are summed with
    `strategy.reduce("SUM", ...)`, which spans the workers of a
    `MultiWorkerMirroredStrategy`.
    """
    devices = list(strategy.extended.worker_devices)
    ids = strategy.experimental_local_results(
        strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(context.replica_id_in_sync_group)
        )
    )
    replica_ids = [int(value) for value in ids]

    def copy_model(model, device):
        if len(devices) == 1:
            return model
        with tf.device(device):
            return _copy_keras_model(model)

    def all_reduce(vectors):
        def local_value(context):
            index = replica_ids.index(context.replica_id_in_sync_group)
            with tf.device(devices[index]):
                return tf.constant(vectors[index], tf.int64)

        values = strategy.experimental_distribute_values_from_function(local_value)
        return strategy.reduce("SUM", values, axis=None).numpy()

    return EvaluationReplicas(
        name=name,
        devices=devices,
        replica_ids=replica_ids,
        num_replicas=strategy.num_replicas_in_sync,
        copy_model=copy_model,
        device_scope=tf.device,
        all_reduce=all_reduce,
        chief=chief,
    )


def jax_replicas(devices=None, *, name="keras.distribution"):
    """Every local JAX device (`keras.distribution.list_devices()`), or `devices`, one process.

    Each device gets a copy of the model built under a one-device
    `keras.distribution.DataParallel`, so its weights are committed to that
    device and JAX runs that copy's computations there.
    """
    devices = list(devices or keras.distribution.list_devices())

    def copy_model(model, device):
        if len(devices) == 1:
            return model
        with keras.distribution.DataParallel(devices=[device]).scope():
            return _copy_keras_model(model)

    return EvaluationReplicas(
        name=name,
        devices=devices,
        replica_ids=list(range(len(devices))),
        num_replicas=len(devices),
        copy_model=copy_model,
        device_scope=lambda device: contextlib.nullcontext(),
        all_reduce=lambda vectors: np.sum(vectors, axis=0),
    )


def one_device(*, name="one device"):
    """The default device of the process: what `evaluation.evaluate` runs on."""
    return EvaluationReplicas(
        name=name,
        devices=[None],
        replica_ids=[0],
        num_replicas=1,
        copy_model=lambda model, device: model,
        device_scope=lambda device: contextlib.nullcontext(),
        all_reduce=lambda vectors: np.sum(vectors, axis=0),
    )


def evaluate_on_replicas(
    model,
    examples,
    replicas,
    *,
    num_classes,
    scales=(1.0,),
    flip=False,
    window=None,
    stride=None,
    pad_to=None,
    class_names=None,
):
    """`evaluation.evaluate` with the images shared out over `replicas` (an
    `EvaluationReplicas`); the same `EvaluationResult`, its confusion matrix equal.

    Every worker of a multi-worker strategy calls it, with the same
    arguments, and gets the whole result.
    """
    settings = dict(num_classes=num_classes, scales=scales, flip=flip, window=window,
                    stride=stride, pad_to=pad_to)

    def score_share(device, replica_id, copy):
        share = tf.distribute.InputContext(
            num_input_pipelines=replicas.num_replicas,
            input_pipeline_id=replica_id,
            num_replicas_in_sync=replicas.num_replicas,
        )
        matrix, num_images = score_examples(
            copy, examples, input_context=share,
            predict_scope=lambda: replicas.device_scope(device), **settings,
        )
        return np.append(matrix.reshape(-1), num_images)

    shares = [
        (device, replica_id, replicas.copy_model(model, device))
        for device, replica_id in zip(replicas.devices, replicas.replica_ids)
    ]
    if len(shares) == 1:
        vectors = [score_share(*shares[0])]
    else:
        with concurrent.futures.ThreadPoolExecutor(len(shares)) as pool:
            futures = [pool.submit(score_share, *share) for share in shares]
            vectors = [future.result() for future in futures]
    total = np.asarray(replicas.all_reduce(vectors), np.int64)
    matrix = total[:-1].reshape(num_classes, num_classes)
    return evaluation_result(
        matrix, total[-1], class_names=class_names,
        settings=evaluation_settings(scales, flip, window, stride, pad_to),
    )
