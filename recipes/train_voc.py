"""Trains EMANet on PASCAL VOC, the other benchmarks, your own data or the demo set.

  # Minutes on a laptop: the tiny model on the generated demo dataset.
  python recipes/train_voc.py --recipe demo --model_dir runs/demo

  # Your own images and classes (mydata/images, mydata/masks, mydata/classes.txt):
  python recipes/train_voc.py --recipe demo --dataset folder --data_dir mydata \\
      --model_dir runs/mine    # also --dataset cvat | labelme | coco (docs/data.md)

  # The official recipe on VOCdevkit + SBD, all local GPUs:
  python recipes/train_voc.py --recipe voc_official --strategy mirrored \\
      --data_dir /data/VOCdevkit --sbd_dir /data/benchmark_RELEASE --model_dir runs/voc

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
from ema_keras.data import discovery, training_data
from ema_keras.training import backends
from ema_keras.training.config import DEMO_RECIPES, check_settings

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
            flags.DEFINE_list(field.name, None, help_text)
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
        try:
            overrides["scales"] = tuple(float(s) for s in overrides["scales"])
        except ValueError:
            raise training.SettingsError(
                f"--scales takes numbers, e.g. 0.5,1.0,1.5; got {','.join(overrides['scales'])}."
            ) from None
    return training.get_recipe(FLAGS.recipe, **overrides)


def with_data(config):
    """`config` with the VOC folder found (see ema_keras.data.discovery) and SBD next to it.

    Only the demo recipes without --data_dir train on the generated demo set.
    """
    if config.data_dir is None and FLAGS.recipe in DEMO_RECIPES:
        return config
    if training_data.is_custom(config.dataset):
        return config  # your own data: its reader checks the folder given
    if config.dataset != "voc":
        root, found_in = discovery.find_data_root(config.dataset, config.data_dir)
        if found_in != "--data_dir":
            logging.info("Using the %s data in %s (from %s).", config.dataset, root, found_in)
        return dataclasses.replace(config, data_dir=root)
    found = discovery.find_voc_data(config.data_dir)
    updates = {"data_dir": found.voc_root}
    if found.found_in != "--data_dir":
        logging.info("Using the VOC data in %s (from %s).", found.voc_root, found.found_in)
    needs_sbd = config.train_split == "trainaug" and not config.train_tfrecords
    if needs_sbd and not (config.sbd_dir or config.aug_dir):
        if not (found.sbd_dir or found.aug_dir):
            raise training.SettingsError(
                f"--train_split trainaug needs SBD's labels, and none is next to {found.voc_root}: "
                "pass --sbd_dir (SBD's benchmark_RELEASE, from Hariharan et al.'s Berkeley page, "
                f"{discovery.SBD_URL}) or --aug_dir (SegmentationClassAug), "
                "or train on VOC alone with --train_split train."
            )
        updates.update(sbd_dir=found.sbd_dir, aug_dir=found.aug_dir)
    return dataclasses.replace(config, **updates)


def main(argv):
    del argv
    # Everything is checked before anything is read or written.
    config = backends.check_settings(check_settings(config_from_flags()))
    if FLAGS.print_config:
        print(json.dumps(dataclasses.asdict(config), indent=2))
        return 0
    if not FLAGS.model_dir:
        raise training.SettingsError(
            "--model_dir is required: the folder for checkpoints, logs and the trained models."
        )
    config = with_data(config)
    logging.info("Training on Keras' %s backend with %s", backends.BACKEND, config)
    result = training.train(config, FLAGS.model_dir)
    miou = "n/a" if result.val_mean_iou is None else f"{result.val_mean_iou:.4f}"
    print(f"Trained to step {result.step}; validation mIoU {miou}; model in {FLAGS.model_dir}")
    return 0


if __name__ == "__main__":
    cli.run(main)
