"""Trains EMANet on PASCAL VOC (or the generated demo set) with model.fit.

    # The official recipe on a VOCdevkit + SBD copy, all local GPUs:
    python recipes/train_voc.py --recipe voc_official --strategy mirrored \
        --data_dir /data/VOCdevkit --sbd_dir /data/benchmark_RELEASE --model_dir runs/voc

    # Minutes on a laptop: the tiny model on the generated demo dataset.
    python recipes/train_voc.py --recipe demo --strategy mirrored --model_dir runs/demo

Every setting of `ema_keras.training.TrainConfig` is a flag; a flag left unset
takes the recipe's value. Killing and restarting the same command resumes from
the last checkpoint in --model_dir.
"""

import os

# TensorFlow's C++ start-up and converter notices are noise in a CLI; warnings stay.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import dataclasses  # noqa: E402
import sys  # noqa: E402
import typing  # noqa: E402

import tensorflow as tf
from absl import app, flags, logging

from ema_keras import training
from ema_keras.data.errors import DataError

_HELP = {
    "preset": "EMANet preset name (ema_keras.models.PRESETS).",
    "data_dir": "VOCdevkit or VOC2012 folder; unset = the generated demo dataset.",
    "sbd_dir": "SBD benchmark_RELEASE folder (for --train_split trainaug).",
    "aug_dir": "SegmentationClassAug folder (alternative to --sbd_dir).",
    "train_tfrecords": "Glob of TFRecord shards to train from instead of the folder.",
    "global_batch_size": "Batch over all replicas; the learning rate is used as given "
    "(scale it yourself, linearly, when you change the batch).",
    "strategy": "one_device | mirrored | multi_worker (TF_CONFIG) | tpu.",
    "mixed_precision": "float32 | mixed_float16 | mixed_bfloat16.",
    "jit_compile": "Compile the train step with XLA.",
    "weights": "A full EMANet weights file (.keras / .weights.h5 / converted checkpoint).",
    "backbone_weights": "ImageNet backbone weights (keras.applications .h5 or converted).",
    "steps_per_checkpoint": "Steps between checkpoints (and validations); divides --steps.",
}

flags.DEFINE_string("recipe", "voc_official", f"Named recipe: {sorted(training.RECIPES)}.")
flags.DEFINE_string("model_dir", None, "Folder for checkpoints, logs and exports.", required=True)


def _define_config_flags():
    """One flag per TrainConfig field, defaulting to None (= the recipe's value)."""
    for field in dataclasses.fields(training.TrainConfig):
        help_text = _HELP.get(field.name, field.name.replace("_", " ") + ".")
        kind = typing.get_args(field.type) or (field.type,)
        if field.name == "scales":
            flags.DEFINE_list(field.name, None, "Random scale factors, e.g. 0.5,0.75,1.0.")
        elif bool in kind:
            flags.DEFINE_boolean(field.name, None, help_text)
        elif int in kind:
            flags.DEFINE_integer(field.name, None, help_text)
        elif float in kind:
            flags.DEFINE_float(field.name, None, help_text)
        else:
            flags.DEFINE_string(field.name, None, help_text)


_define_config_flags()
FLAGS = flags.FLAGS


def config_from_flags():
    overrides = {
        field.name: FLAGS[field.name].value for field in dataclasses.fields(training.TrainConfig)
    }
    if overrides["scales"] is not None:
        overrides["scales"] = tuple(float(s) for s in overrides["scales"])
    return training.get_recipe(FLAGS.recipe, **overrides)


def _exit_with(error, status):
    """One line naming the flag or the file, nothing else (a traceback helps no one here)."""
    print(f"train_voc.py: {error}", file=sys.stderr)
    sys.exit(status)


def main(argv):
    del argv
    # tf.distribute logs every all-reduce it builds at INFO; keep the console readable.
    tf.get_logger().setLevel("WARNING")
    try:
        config = config_from_flags()
        logging.info("Training with %s", config)
        result = training.train(config, FLAGS.model_dir)
    except training.SettingsError as error:
        _exit_with(error, 2)
    except (DataError, training.TrainingDiverged) as error:
        _exit_with(error, 1)
    miou = "n/a" if result.val_mean_iou is None else f"{result.val_mean_iou:.4f}"
    print(f"Trained to step {result.step}; validation mIoU {miou}; model in {FLAGS.model_dir}")


if __name__ == "__main__":
    app.run(main)
