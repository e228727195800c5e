"""Trains EMANet on PASCAL VOC, the other benchmarks, your own data or the demo set.

  # Minutes on a laptop: the tiny model on the generated demo dataset.
  python recipes/train_voc.py --recipe demo --model_dir runs/demo

  # Your own images and classes (mydata/images, mydata/masks, mydata/classes.txt):
  python recipes/train_voc.py --recipe demo --dataset folder --data_dir mydata \\
      --model_dir runs/mine    # also --dataset cvat | labelme | coco (docs/data.md)

  # The official recipe on VOCdevkit + SBD, all local GPUs:
  python recipes/train_voc.py --recipe voc_official --strategy mirrored \\
      --data_dir /data/VOCdevkit --sbd_dir /data/benchmark_RELEASE --model_dir runs/voc

  # For phones: then 300 quantization-aware steps, written as runs/mobile/qat.keras
  # (export_model.py --qat_model runs/mobile/qat.keras writes its int8 TFLite file):
  python recipes/train_voc.py --recipe demo_mobile --model_dir runs/mobile --qat_steps 300

  # The same on the JAX backend (keras.distribution.DataParallel, same tf.data input):
  KERAS_BACKEND=jax python recipes/train_voc.py --recipe voc_official --strategy mirrored ...

Without --data_dir the data is looked for in $EMA_KERAS_DATA_DIR, ./data/VOCdevkit,
then the TFDS manual folder (~/tensorflow_datasets/downloads/manual); SBD next to it.
Only the demo recipes (demo, demo_mobile) without --data_dir use the generated demo set.
Every setting of ema_keras.training.TrainConfig is a flag; a flag left unset takes the
recipe's value (--print_config shows them). Killing and restarting the same command
resumes from the last checkpoint in --model_dir.
"""

import dataclasses
import json
import typing

from absl import flags, logging

from ema_keras import cli, training
from ema_keras.training import backends
from ema_keras.training.config import check_settings
from ema_keras.training.data_search import with_found_data

flags.DEFINE_string(
    "recipe", "voc_official", f"Named recipe the other flags override: {sorted(training.RECIPES)}."
)
flags.DEFINE_string("model_dir", None, "Folder for checkpoints, logs and the trained models.")
flags.DEFINE_boolean(
    "print_config", False, "Print the resolved settings (recipe + flags) as JSON and exit."
)


def _define_config_flags():
    """One flag per TrainConfig field, helped by its metadata, unset = the recipe's value."""
    for field in dataclasses.fields(training.TrainConfig):
        help_text = field.metadata["help"]
        kind = typing.get_args(field.type) or (field.type,)
        if field.name == "scales":
            cli.define_scales_flag(__name__, None, help_text)
        elif field.name == "strategy":
            cli.define_strategy_flag(__name__, None, help_text)
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
    return training.get_recipe(FLAGS.recipe, **overrides)


def main(argv):
    del argv
    # Everything is checked before anything is read or written.
    config = check_settings(config_from_flags())
    if FLAGS.print_config:
        print(json.dumps(dataclasses.asdict(config), indent=2))
        return 0
    if not FLAGS.model_dir:
        raise training.SettingsError(
            "--model_dir is required: the folder for checkpoints, logs and the trained models."
        )
    config = with_found_data(config, FLAGS.recipe)
    logging.info("Training on Keras' %s backend with %s", backends.BACKEND, config)
    stage = None
    if config.qat_steps:
        # Imported only when asked for: quantization loads the inference package.
        from ema_keras.quantization import QuantizationAwareStage

        stage = QuantizationAwareStage(config.qat_steps, learning_rate=config.qat_learning_rate)
    result = training.train(config, FLAGS.model_dir, after_training=stage)
    miou = "n/a" if result.val_mean_iou is None else f"{result.val_mean_iou:.4f}"
    print(f"Trained to step {result.step}; validation mIoU {miou}; model in {FLAGS.model_dir}")
    return 0


if __name__ == "__main__":
    cli.run(main)
