"""The benchmark recipes, and one short training + evaluation per dataset on its fixture."""

import dataclasses
import os

import numpy as np
import pytest

from ema_keras.data import datasets
from ema_keras.data.image_io import convert_sbd_to_png
from ema_keras.data.tfrecords import write_tfrecords
from ema_keras.inference.evaluation import evaluate
from ema_keras.training import get_recipe, train
from ema_keras.training.config import RECIPES, SettingsError, check_settings
from tests.data.benchmark_fixtures import (
    write_cityscapes,
    write_coco_stuff_10k,
    write_coco_stuff_164k,
    write_pascal_context,
)

PUBLISHED = {  # dataset: (crop, global batch, steps, learning rate, OHEM), see docs/datasets.md
    "cityscapes": (769, 8, 80_000, 0.01, True),
    "pascal_context": (480, 16, 80_000, 0.004, False),
    "pascal_context_60": (480, 16, 80_000, 0.004, False),
    "coco_stuff10k": (513, 16, 30_000, 0.009, False),
    "coco_stuff164k": (513, 16, 80_000, 0.009, False),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_benchmark_recipes_carry_the_published_settings(name):
    config = check_settings(RECIPES[name])
    assert config.dataset == name
    assert config.num_classes == datasets.get_dataset(name).num_classes
    got = (config.crop_size, config.global_batch_size, config.steps, config.learning_rate)
    assert got + (config.ohem,) == PUBLISHED[name]
    assert config.steps % config.steps_per_checkpoint == 0


def test_settings_that_do_not_fit_the_dataset_are_refused():
    with pytest.raises(SettingsError, match="--num_classes 21 does not fit --dataset cityscapes"):
        check_settings(get_recipe("voc_official", dataset="cityscapes", num_classes=21))
    # Left unset, the count is the dataset's: only the VOC split is then refused.
    with pytest.raises(SettingsError, match="--train_split trainaug is VOC's"):
        check_settings(get_recipe("voc_official", dataset="cityscapes"))
    with pytest.raises(SettingsError, match="--train_split trainaug is VOC's"):
        check_settings(get_recipe("pascal_context", train_split="trainaug"))
    with pytest.raises(SettingsError, match="--dataset 'kitti' is unknown"):
        check_settings(get_recipe("demo", dataset="kitti"))
    # A VOC-format folder of one's own may have any number of classes.
    assert check_settings(get_recipe("demo", num_classes=5)).num_classes == 5


def _cityscapes(root):
    write_cityscapes(root, {"train": {"aachen": 4}, "val": {"frankfurt": 1}}, size=(32, 64))
    return "train", "val"


def _context(root):
    write_pascal_context(root, {"train": ["a", "b", "c", "d"], "val": ["e"]})
    return "train", "val"


def _coco164k(root):
    write_coco_stuff_164k(root, {"train2017": 4, "val2017": 1})
    return "train2017", "val2017"


def _coco10k(root):
    write_coco_stuff_10k(root, {"train": 4, "test": 1})
    return "train", "test"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, write, window",
    [
        ("cityscapes", _cityscapes, 32),  # sliding window over the 32x64 images
        ("pascal_context", _context, None),
        ("coco_stuff164k", _coco164k, None),
        ("coco_stuff10k", _coco10k, None),
    ],
)
def test_short_training_and_evaluation_under_mirrored(tmp_path, name, write, window):
    """Trains from TFRecords of the fixture (labels mapped once when written), then scores
    the validation split read from its own files, label map applied in the graph."""
    dataset = datasets.get_dataset(name)
    root = str(tmp_path / name)
    train_split, val_split = write(root)
    train_examples = dataset.read_split(root, train_split)
    write_tfrecords(train_examples, tmp_path / "records", 2, prefix=name)
    config = dataclasses.replace(
        get_recipe("demo"),
        dataset=name,
        num_classes=dataset.num_classes,
        train_tfrecords=str(tmp_path / "records" / f"{name}-*.tfrecord"),
        validate=False,
        strategy="mirrored",
        crop_size=32,
        global_batch_size=2,
        steps=2,
        steps_per_checkpoint=2,
        verbose=0,
    )
    result = train(check_settings(config), str(tmp_path / "run"))
    assert result.step == 2

    val_examples = dataset.read_split(root, val_split)
    if val_examples[0].label_path.endswith(".mat"):  # COCO-Stuff-10k: PNGs once
        val_examples = convert_sbd_to_png(val_examples, tmp_path / "labels", num_classes=171)
    scores = evaluate(
        result.model,
        val_examples,
        num_classes=dataset.num_classes,
        window=window,
        class_names=dataset.class_names,
    )
    assert scores.num_images == 1 and 0.0 <= scores.mean_iou <= 1.0
    assert scores.class_names == list(dataset.class_names)
    assert len(scores.per_class_iou) == dataset.num_classes
    # Classes the mapped label holds get an IoU; the rest are absent (NaN) unless predicted.
    assert np.isfinite(scores.per_class_iou).sum() >= 1
    assert os.path.isfile(os.path.join(tmp_path, "run", "last.keras"))
