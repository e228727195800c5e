"""Training EMANet with `model.fit` under any tf.distribute strategy, or on JAX / PyTorch.

One image's path: files on disk -> `ema_keras.data.pipeline.train_dataset`
(decode, scale, pad, crop, flip; raw pixels, the model normalises) -> per-replica batches from
`strategy.distribute_datasets_from_function` (on JAX, global batches that
`keras.distribution.DataParallel` splits) -> `EMANet` -> masked cross-entropy
-> `ParameterGroupSGD` with the poly schedule. The EMA bases are updated
inside the model's forward pass, identically on every replica. What differs
between backends is decided in `backends.py`.
"""

import dataclasses
import io
import json
import os
from typing import Optional

import keras
import tensorflow as tf
from absl import logging
from PIL import Image

from ema_keras import weights
from ema_keras.data import datasets, demo, pipeline, splits, training_data
from ema_keras.data.class_weights import resolve_class_weights
from ema_keras.models import build_preset
from ema_keras.models.class_info import set_class_info
from ema_keras.models.segmenter_parts import image_encoder_of
from ema_keras.training import (
    backends,
    checkpointing,
    curves,
    distillation,
    run_record,
    tensorboard,
)
from ema_keras.training.compiling import compile_model
from ema_keras.training.config import SettingsError
from ema_keras.training.first_step import FirstStepTimer
from ema_keras.visualize import label_colours

CONFIG_FILE = run_record.CONFIG_FILE
LAST_MODEL_FILE = "last.keras"
BEST_MODEL_FILE = "best.keras"
SUMMARY_FILE = "summary.json"


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    history: dict
    step: int
    val_mean_iou: Optional[float]
    model_dir: str


def build_model(config):
    """The preset's model in the current strategy scope and dtype policy, weights loaded.

    `--weights` may hold another class count than the model (fine-tuning a
    trained model to new classes): its classifiers then keep their fresh
    initialisation, which one log line says; any other difference is refused
    (`WeightsMismatchError`). `--freeze_backbone` leaves the image encoder
    untrained, its BatchNorms on their moving statistics; it needs weights to
    start from, since a frozen random encoder would only ever feed noise to the head.
    """
    _refuse_frozen_random_backbone(config)
    model = build_preset(config.preset, num_classes=config.num_classes, seed=config.seed)
    if config.weights:
        loaded = weights.load_fine_tuning_weights(model, config.weights)
        if loaded.reinitialised:
            logging.info("%s", loaded.message)
    elif config.backbone_weights:
        weights.load_backbone_weights(image_encoder_of(model), config.backbone_weights)
    if config.freeze_backbone:
        # Before compiling: the optimizer and its parameter groups see only
        # the head's variables.
        image_encoder_of(model).trainable = False
    return model


def _refuse_frozen_random_backbone(config):
    if config.freeze_backbone and not (config.weights or config.backbone_weights):
        raise SettingsError(
            "--freeze_backbone keeps the backbone as it starts: give it trained weights with "
            "--weights or --backbone_weights."
        )


def refuse_before_writing(config, model_dir):
    """Raises `SettingsError` for settings that cannot run, reading the data but writing nothing.

    Runs before the data is resolved, which writes into `model_dir` (the demo
    set, converted masks, the pre-run check's verdicts): a run's folder is
    refused other classes, and --eval_pad_size must hold every validation
    image, whose files are only opened for their size (one that cannot be
    read is left to the pre-run check, which names it).
    """
    _refuse_frozen_random_backbone(config)
    annotated = table = None
    if config.data_dir is not None and training_data.is_custom(config.dataset):
        annotated = training_data.read_annotated(config.dataset, config.data_dir)
        table = annotated.class_table
        run_record.refuse_other_classes(annotated.class_table, model_dir)
    elif not training_data.is_custom(config.dataset):
        table = training_data.class_table_of(config.dataset, config.num_classes)
        run_record.refuse_other_classes(table, model_dir)
    if table is not None:
        distillation.refuse_unfit_teacher(config, table.num_classes)
    if not config.validate:
        return
    needed = max(_validation_image_sides(config, model_dir, annotated), default=0)
    if config.eval_pad_size < max(needed, 1):
        raise SettingsError(
            f"--eval_pad_size={config.eval_pad_size} is smaller than the largest validation "
            f"image side ({needed}); use --eval_pad_size={needed} or more."
        )


def _validation_image_sides(config, model_dir, annotated):
    """The longest side of each validation image of `config` (as `resolve_training_data` finds
    them), from the image headers; the generated demo set, not written yet, from its size."""
    if config.data_dir is None:
        return [max(demo.DEMO_IMAGE_SIZE)]
    if annotated is not None:
        ids, _ = splits.split_ids(
            annotated, config.val_split, val_fraction=config.val_fraction, seed=config.seed,
            run_dir=model_dir,
        )
        chosen = set(ids)
        images = [image.image for image in annotated.images if image.image_id in chosen]
    else:
        root = datasets.get_dataset(config.dataset).find_root(config.data_dir)
        examples = datasets.read_examples(
            config.dataset, root, config.val_split, sbd_root=config.sbd_dir,
            aug_dir=config.aug_dir,
        )
        images = [example.image_path for example in examples]
    sides = []
    for image in images:
        try:
            with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
                sides.append(max(opened.size))  # EXIF rotation swaps the sides, keeps the longest
        except (OSError, ValueError):
            pass  # the pre-run check names it
    return sides


def _label_targets(model):
    """Maps (image, label) to what `fit` expects for the model's outputs."""
    if isinstance(model.output, dict):
        names = list(model.output)
        return lambda image, label: (image, {name: label for name in names})
    return None


def _work_around_keras_multi_worker_fit(model, config, strategy):
    """Makes Keras 3.15's fit() run under MultiWorkerMirroredStrategy.

    Two Keras bugs (tensorflow/tensorflow#72388) stop it otherwise:
    - before training, fit builds the model from the first batch, which it
      averages across replicas first; the collective strategy cannot reduce
      distributed inputs in eager mode. The build only needs the batch's
      structure, so it is done here from zeros of one replica's batch.
    - fit averages each step's logs across workers with
      `strategy.reduce("MEAN", value, axis=0)`, which rejects scalars; the
      steps' logs are therefore returned as 1-element vectors, which that
      reduce averages back into scalars.
    """
    batch = config.global_batch_size // strategy.num_replicas_in_sync
    images = tf.zeros((batch, config.crop_size, config.crop_size, 3))
    labels = tf.zeros((batch, config.crop_size, config.crop_size), tf.int32)
    targets = _label_targets(model)
    data_batch = targets(images, labels) if targets else (images, labels)
    # Keras 3.15 internal (no public route; tests/test_keras_internals.py):
    # the build Keras' fit runs on its first batch, run here under the scope.
    with strategy.scope():
        model._symbolic_build(data_batch=data_batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    def as_vectors(step):
        return lambda data: {name: tf.reshape(value, [-1]) for name, value in step(data).items()}

    model.train_step = as_vectors(model.train_step)
    model.test_step = as_vectors(model.test_step)


def _monitor_name(model):
    return "val_logits_mean_iou" if isinstance(model.output, dict) else "val_mean_iou"


def train(config, model_dir, *, after_training=None):
    """Trains (or resumes training) into `model_dir`; returns a `TrainResult`.

    Writes, on the chief: checkpoints (`checkpoints/`, resumed automatically),
    `last.keras`, `best.keras` (best validation mIoU), TensorBoard logs
    (`logs/`), `history.csv`, `training_curve.png` and `summary.json`.
    Settings that cannot run together raise `SettingsError` before anything
    is written. Raises `checkpointing.TrainingDiverged` if the loss becomes
    NaN or Inf. Running a finished training again trains nothing and keeps
    what it recorded.

    `after_training`: a stage that fine-tunes a copy of the trained model
    (`ema_keras.quantization.QuantizationAwareStage` for `--qat_steps`): an
    object with `derive(model)` (the compiled copy, built in the strategy's
    scope), `steps`, `file_name` and `description`. The copy is fitted on
    the training data, scored on the validation data, written as
    `file_name` and its score recorded in `summary.json` under the file's
    stem (`qat_val_mean_iou`). A finished run whose copy is missing gets
    only this stage.
    """
    first_step = FirstStepTimer()
    execution = backends.make_execution(config)
    with execution.active():
        return _train(config, model_dir, execution, first_step, after_training)


def _stage_pending(stage, model_dir):
    return stage is not None and not os.path.isfile(os.path.join(model_dir, stage.file_name))


def _run_stage(stage, model, config, execution, train_data, validation_data, model_dir):
    """Fits `stage`'s copy of the trained model; returns its validation mIoU (or None)."""
    with execution.scope():
        derived = stage.derive(model)
    if isinstance(execution.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _work_around_keras_multi_worker_fit(derived, config, execution.strategy)
    derived.fit(
        train_data, steps_per_epoch=stage.steps, epochs=1, shuffle=False, verbose=config.verbose
    )
    score = None
    if validation_data is not None:
        scores = derived.evaluate(validation_data, return_dict=True, verbose=0)
        score = float(scores[_monitor_name(derived)[len("val_"):]])
    path = os.path.join(model_dir, stage.file_name)
    if execution.chief:
        checkpointing.save_model_atomically(derived, path)
    logging.info(
        "%s: %d steps; validation mIoU %s; model in %s.", stage.description, stage.steps,
        "not measured" if score is None else f"{score:.4f}", path,
    )  # fmt: skip
    return score


def _train(config, model_dir, execution, first_step, after_training=None):
    chief = execution.chief
    epochs, steps_per_epoch = checkpointing.chunk_plan(config.steps, config.steps_per_checkpoint)
    run_record.refuse_other_run(config, model_dir)
    refuse_before_writing(config, model_dir)
    run_data = training_data.resolve_training_data(config, model_dir)
    config = dataclasses.replace(config, num_classes=run_data.num_classes)
    train_source, val_examples = run_data.train, run_data.val
    class_weights = resolve_class_weights(
        config.class_weights, run_data.train_check.pixel_counts, config.num_classes
    )

    keras.mixed_precision.set_dtype_policy(config.mixed_precision)

    with execution.scope():
        # Built (and its weights loaded) before the run is recorded: a refused
        # --weights leaves no train_config.json (only the resolved data's files).
        model = build_model(config)
        set_class_info(model, run_data.class_table.names, run_data.class_table.palette)
        if chief:
            run_record.record_run(config, run_data.class_table, model_dir)
        compile_model(
            model, config, jit_compile=execution.jit_compile, class_weights=class_weights
        )
        checkpoint = execution.make_checkpoint(model, os.path.join(model_dir, "checkpoints"))
        initial_step = checkpoint.restore_latest()
    initial_epoch = initial_step // steps_per_epoch
    if initial_step:
        logging.info("Resuming from step %d (%s).", initial_step, checkpoint.latest)
    trained = initial_epoch >= epochs
    stage_owed = _stage_pending(after_training, model_dir)
    if trained:
        summary = _finished_summary(model, initial_step, model_dir, chief)
        result = TrainResult(model, {}, initial_step, summary.get("val_mean_iou"), model_dir)
        if not stage_owed:
            return result
    if config.teacher and not trained:
        with execution.scope():
            distillation.distil_into(model, config)
    targets = _label_targets(model)

    def dataset_fn(input_context):
        dataset = pipeline.train_dataset(
            train_source,
            batch_size=config.global_batch_size,
            crop_size=config.crop_size,
            scales=config.scales,
            flip=config.flip,
            # A resumed run draws new batches instead of replaying the first ones.
            seed=config.seed + initial_step,
            input_context=input_context,
            cache=config.cache_dataset,
            num_classes=config.num_classes,
        )
        return dataset.map(targets) if targets else dataset

    train_data = execution.distribute(dataset_fn)
    validation_data = None
    if config.validate:
        validation_data = pipeline.eval_dataset(
            val_examples,
            batch_size=execution.num_replicas,
            pad_to=config.eval_pad_size,
            cache=config.cache_dataset,
            num_classes=config.num_classes,
        )
        if execution.strategy is None:
            validation_data = backends.whole_batches(validation_data, execution.num_replicas)
        if targets:
            validation_data = validation_data.map(targets)

    if isinstance(execution.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _work_around_keras_multi_worker_fit(model, config, execution.strategy)

    if not trained:  # a trained run gets here for its stage alone
        guard = checkpointing.CheckpointAndGuard(checkpoint)
        callbacks = [first_step, guard]
        if chief:
            log_dir = os.path.join(model_dir, "logs")
            callbacks += [
                checkpointing.BestModelExport(
                    os.path.join(model_dir, BEST_MODEL_FILE),
                    monitor=_monitor_name(model),
                    enabled=config.validate,
                ),
                keras.callbacks.CSVLogger(
                    os.path.join(model_dir, curves.HISTORY_FILE), append=True
                ),
                tensorboard.StepTensorBoard(log_dir, update_freq=config.log_every_steps),
                tensorboard.LearningRateAndImages(
                    log_dir,
                    every_steps=config.log_every_steps,
                    colours=label_colours(training_data.colour_dataset(config.dataset), model),
                    validation_images=pipeline.eval_dataset(
                        val_examples[: tensorboard.NUM_VALIDATION_IMAGES],
                        batch_size=tensorboard.NUM_VALIDATION_IMAGES,
                        pad_to=config.eval_pad_size,
                        num_classes=config.num_classes,
                    )
                    if config.validate
                    else None,
                ),
            ]
        history = model.fit(
            train_data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation_data,
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=callbacks,
            verbose=config.verbose,
        ).history
        guard.raise_if_diverged()

        step = int(model.optimizer.iterations.numpy())
        val_mean_iou = None
        monitor = _monitor_name(model)
        if history.get(monitor):
            val_mean_iou = float(history[monitor][-1])
        summary = {
            "step": step,
            "val_mean_iou": val_mean_iou,
            "first_step_seconds": first_step.seconds,
        }
        if chief:
            _write_final_outputs(model, model_dir, summary)
        result = TrainResult(model, history, step, val_mean_iou, model_dir)
    if stage_owed:
        score = _run_stage(
            after_training, model, config, execution, train_data, validation_data, model_dir
        )
        summary[after_training.file_name[: -len(".keras")] + "_val_mean_iou"] = score
        if chief:
            _write_summary(model_dir, summary)
    return result


def _write_final_outputs(model, model_dir, summary):
    checkpointing.save_model_atomically(model, os.path.join(model_dir, LAST_MODEL_FILE))
    curves.plot_training_curve(model_dir)
    _write_summary(model_dir, summary)


def _write_summary(model_dir, summary):
    with open(os.path.join(model_dir, SUMMARY_FILE), "w") as file:
        json.dump(summary, file, indent=2)


def _finished_summary(model, step, model_dir, chief):
    """The recorded summary of a run whose checkpoint is at its last step; nothing rewritten.

    Only a run stopped between its last checkpoint and its final outputs gets
    them written now (the validation mIoU then comes from history.csv).
    """
    logging.info("%s is already trained to its last step (%d).", model_dir, step)
    summary_path = os.path.join(model_dir, SUMMARY_FILE)
    if os.path.isfile(summary_path):
        with open(summary_path) as file:
            return json.load(file)
    history_path = os.path.join(model_dir, curves.HISTORY_FILE)
    rows = curves.read_history(model_dir) if os.path.isfile(history_path) else {}
    scores = [row[_monitor_name(model)] for row in rows.values() if _monitor_name(model) in row]
    summary = {"step": step, "val_mean_iou": scores[-1] if scores else None}
    if chief:
        _write_final_outputs(model, model_dir, summary)
    return summary
