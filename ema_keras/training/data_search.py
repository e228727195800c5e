"""Where a training run's data is: the folder given, else found (`ema_keras.data.discovery`).

    config = with_found_data(config, recipe)   # data_dir (and SBD) filled in, or refused

Only the demo recipes without a data folder train on the generated demo set;
datasets of one's own are read from the folder given, which their reader
checks. A benchmark without a folder given is looked for where users keep it,
and VOC's trainaug split needs SBD's labels (or SegmentationClassAug) beside it.
"""

import dataclasses

from absl import logging

from ema_keras.data import discovery, training_data
from ema_keras.training.config import DEMO_RECIPES
from ema_keras.training.errors import SettingsError


def with_found_data(config, recipe=None):
    """`config` with its data folder found and, for VOC, SBD next to it.

    `recipe` is the name of the recipe `config` derives from: a demo recipe
    (`DEMO_RECIPES`) without `data_dir` keeps it None (the demo set). Raises
    `DataNotFoundError` when no folder is given and none is found,
    `MissingFileError` naming a folder given that holds no such data, and
    `SettingsError` for trainaug without SBD.
    """
    if config.data_dir is None and recipe in DEMO_RECIPES:
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
            raise SettingsError(
                f"--train_split trainaug needs SBD's labels, and none is next to {found.voc_root}: "
                "pass --sbd_dir (SBD's benchmark_RELEASE, from Hariharan et al.'s Berkeley page, "
                f"{discovery.SBD_URL}) or --aug_dir (SegmentationClassAug), "
                "or train on VOC alone with --train_split train."
            )
        updates.update(sbd_dir=found.sbd_dir, aug_dir=found.aug_dir)
    return dataclasses.replace(config, **updates)
