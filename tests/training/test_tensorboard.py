"""What a training run shows: no warnings of ours, TensorBoard logs read back."""

import collections
import glob
import io
import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ema_keras.schedules import PolyDecay
from ema_keras.training import tensorboard, train


def _events(run_dir):
    """{tag: [(step, value)]} from the event files of a run folder; images as their PNGs."""
    found = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found[value.tag].append((event.step, tf.make_ndarray(value.tensor)))
    return found


@pytest.mark.parametrize("strategy", ["one_device", "mirrored"])
def test_training_raises_no_warnings(tiny_config, tmp_path, strategy):
    config = tiny_config(strategy=strategy, validate=True, steps=2, steps_per_checkpoint=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Not ours: Keras' .keras saving calls np.array on TensorFlow variables, whose
        # __array__ has no `copy` argument; NumPy 2 notes it (hidden by Python's defaults).
        warnings.filterwarnings(
            "ignore", "__array__ implementation doesn't accept a copy keyword", DeprecationWarning
        )
        result = train(config, str(tmp_path / strategy))
    assert result.step == 2


def test_tensorboard_scalars_per_step_and_validation_images(tiny_config, tmp_path):
    model_dir = str(tmp_path / "run")
    # Validations (every checkpoint, 2 steps) that do not fall on the scalars' steps (3).
    config = tiny_config(
        validate=True, steps=6, steps_per_checkpoint=2, log_every_steps=3, learning_rate=0.05
    )
    train(config, model_dir)
    logs = os.path.join(model_dir, "logs")
    train_events = _events(os.path.join(logs, tensorboard.TRAIN_RUN))
    for tag in ("batch_loss", "batch_mean_iou", "learning_rate"):
        assert [step for step, _ in train_events[tag]] == [3, 6], tag
    # The learning rate is the schedule's at the optimizer's iteration.
    schedule = PolyDecay(config.learning_rate, config.steps, power=config.poly_power)
    rates = [float(value) for _, value in train_events["learning_rate"]]
    np.testing.assert_allclose(rates, [float(schedule(3)), float(schedule(6))], rtol=1e-5)
    assert rates[1] < rates[0]
    assert [step for step, _ in train_events["epoch_loss"]] == [0, 1, 2]  # one per chunk

    validation_events = _events(os.path.join(logs, tensorboard.VALIDATION_RUN))
    assert [step for step, _ in validation_events["evaluation_mean_iou_vs_iterations"]] == [2, 4, 6]
    images = validation_events["image_prediction_truth"]
    assert [step for step, _ in images] == [2, 4, 6]  # one per validation
    width, height, *pngs = images[-1][1]
    assert (int(width), int(height)) == (3 * config.eval_pad_size, config.eval_pad_size)
    assert len(pngs) == tensorboard.NUM_VALIDATION_IMAGES
    panel = np.asarray(Image.open(io.BytesIO(pngs[0])))
    assert panel.shape == (config.eval_pad_size, 3 * config.eval_pad_size, 3)
    truth = panel[:, 2 * config.eval_pad_size :]
    # The ground truth in VOC colours: padding is 255 (cream), the demo objects are coloured.
    assert (truth == (224, 224, 192)).all(axis=-1).any()
    assert len(np.unique(truth.reshape(-1, 3), axis=0)) >= 3


@pytest.mark.slow
def test_a_resumed_run_continues_the_step_numbers(tiny_config, tmp_path):
    model_dir = str(tmp_path / "run")
    train(tiny_config(steps=2, steps_per_checkpoint=2, log_every_steps=1), model_dir)
    # The same run extended to 4 steps resumes at its step-2 checkpoint.
    train(tiny_config(steps=4, steps_per_checkpoint=2, log_every_steps=1), model_dir)
    events = _events(os.path.join(model_dir, "logs", tensorboard.TRAIN_RUN))
    for tag in ("batch_loss", "learning_rate"):
        assert sorted(step for step, _ in events[tag]) == [1, 2, 3, 4], tag


def test_validation_images_of_your_own_data_are_in_its_class_colours(tiny_config, tmp_path):
    from tests.data.folder_fixtures import CLASS_COLOURS, write_folder_dataset

    data_dir = str(tmp_path / "mydata")
    write_folder_dataset(data_dir, num_images=24, masks="colour", size=(64, 64))
    config = tiny_config(
        dataset="folder", data_dir=data_dir, validate=True, steps=2, steps_per_checkpoint=2,
        val_fraction=0.25,
    )  # fmt: skip
    train(config, str(tmp_path / "run"))
    events = _events(os.path.join(tmp_path, "run", "logs", tensorboard.VALIDATION_RUN))
    _, _, *pngs = events["image_prediction_truth"][-1][1]
    panel = np.asarray(Image.open(io.BytesIO(pngs[0])))
    truth = panel[:, 2 * config.eval_pad_size :].reshape(-1, 3)
    shown = {tuple(colour) for colour in np.unique(truth, axis=0).tolist()}
    voc_ignore = (224, 224, 192)  # the padding (255) keeps the VOC colour past the classes
    assert shown <= set(CLASS_COLOURS) | {voc_ignore}, shown
    assert len(shown & set(CLASS_COLOURS[1:])) >= 1  # a class other than background is drawn
