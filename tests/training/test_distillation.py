"""Teacher-student training (issue 23): the channel-wise distillation loss, and --teacher.

The loss is checked against a float64 NumPy reference; the teacher's term in the
student's step against the same reference on the models' own logits, with
gradients reaching the student only; --teacher through train_voc.py under
`mirrored`, its logged loss against the run without a teacher, and its refusals
before anything is written.
"""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.losses import ChannelWiseDistillation, MaskedSparseCrossEntropy
from ema_keras.models import build_preset
from ema_keras.training import SettingsError, get_recipe
from ema_keras.training.config import check_settings
from ema_keras.training.distillation import add_teacher, load_teacher
from tests.cli_testing import run_program
from tests.tiny_recipe import TINY_TRAINING
from tests.training.test_refusals_before_writing import files_under, refusal


def reference_distillation(teacher, student, temperature, weight):
    """KL(teacher || student) of each channel's softmax over the positions, float64."""

    def log_softmax_over_positions(logits):
        batch, height, width, channels = logits.shape
        flat = logits.astype(np.float64).reshape(batch, height * width, channels) / temperature
        flat = flat - flat.max(axis=1, keepdims=True)
        return flat - np.log(np.exp(flat).sum(axis=1, keepdims=True))

    log_teacher = log_softmax_over_positions(teacher)
    log_student = log_softmax_over_positions(student)
    divergence = (np.exp(log_teacher) * (log_teacher - log_student)).sum(axis=1)  # (B, C)
    return weight * temperature**2 * divergence.mean()


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 8, 8, 21), (3, 4, 6, 1)])
@pytest.mark.parametrize("temperature, weight", [(1.0, 1.0), (4.0, 3.0), (0.5, 2.0)])
def test_the_loss_matches_a_numpy_reference(shape, temperature, weight):
    rng = np.random.default_rng(sum(shape))
    teacher = (rng.normal(size=shape) * 3).astype("float32")
    student = (rng.normal(size=shape) * 3).astype("float32")
    loss = ChannelWiseDistillation(temperature=temperature, weight=weight)
    np.testing.assert_allclose(
        float(loss(teacher, student)),
        reference_distillation(teacher, student, temperature, weight),
        rtol=1e-5,
    )


def test_the_loss_is_zero_for_the_teachers_own_maps_and_round_trips():
    logits = np.random.default_rng(0).normal(size=(2, 6, 5, 4)).astype("float32")
    loss = ChannelWiseDistillation()
    assert (loss.temperature, loss.weight) == (4.0, 3.0)  # CIRKD's logit settings
    # A constant added to a channel leaves its spatial distribution as it is.
    shifted = logits + np.arange(4, dtype="float32")
    assert abs(float(loss(logits, shifted))) < 1e-5
    copy = keras.losses.deserialize(keras.losses.serialize(ChannelWiseDistillation(2.0, 0.5)))
    assert (type(copy), copy.temperature, copy.weight) == (ChannelWiseDistillation, 2.0, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        ChannelWiseDistillation(temperature=0.0)


@pytest.mark.parametrize(
    "flag, value", [("distill_temperature", 0.0), ("distill_weight", -1.0)]
)
def test_bad_distillation_settings_are_refused_naming_the_flag(flag, value):
    with pytest.raises(SettingsError, match=f"--{flag}"):
        check_settings(get_recipe("demo", **{flag: value}))


def tiny_model(num_classes, seed):
    return build_preset("emanet_tiny_demo", num_classes=num_classes, seed=seed)


def test_the_term_reaches_the_student_only_and_leaves_the_teacher_as_trained(tmp_path):
    teacher_file = str(tmp_path / "teacher.keras")
    tiny_model(4, seed=7).save(teacher_file)
    teacher = load_teacher(teacher_file)
    student = tiny_model(4, seed=1)
    student.compile(optimizer=keras.optimizers.SGD(0.1), loss=MaskedSparseCrossEntropy())
    add_teacher(student, teacher, temperature=4.0, weight=3.0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, 32, 40, 3)).astype("float32")
    labels = rng.integers(0, 4, size=(2, 32, 40)).astype("int32")

    with tf.GradientTape(persistent=True) as tape:
        predicted = student(images, training=True)
        task = student.compute_loss(images, labels, predicted, training=False)
        total = student.compute_loss(images, labels, predicted, training=True)
        term = total - task
    expected = reference_distillation(
        keras.ops.convert_to_numpy(teacher(images, training=False)),
        keras.ops.convert_to_numpy(predicted), 4.0, 3.0,
    )
    np.testing.assert_allclose(float(term), expected, rtol=1e-4)
    assert expected > 0
    assert all(g is None for g in tape.gradient(total, teacher.weights))
    term_gradients = tape.gradient(term, student.trainable_weights)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in term_gradients if g is not None)

    before = [keras.ops.convert_to_numpy(v) for v in teacher.weights]
    student_before = keras.ops.convert_to_numpy(student.trainable_weights[0])
    student.fit(images, labels, epochs=1, batch_size=2, verbose=0)
    for variable, value in zip(teacher.weights, before):  # BatchNorm statistics, EMA bases too
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    assert not np.array_equal(keras.ops.convert_to_numpy(student.trainable_weights[0]),
                              student_before)
    # The student's file holds the student alone.
    student_file = str(tmp_path / "student.keras")
    student.save(student_file)
    loaded = keras.models.load_model(student_file)
    assert len(loaded.weights) == len(tiny_model(4, seed=1).weights)


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """Untrained tiny EMANets as .keras files: one of the demo's 21 classes, one of 4."""
    folder = tmp_path_factory.mktemp("teachers")
    files = {}
    for classes in (21, 4):
        files[classes] = str(folder / f"teacher_{classes}.keras")
        tiny_model(classes, seed=11).save(files[classes])
    return files


def tiny_flags(data_dir):
    settings = dict(TINY_TRAINING, steps=1)
    return [f"--{name}={value}" for name, value in settings.items()] + [
        "--recipe=demo", f"--data_dir={data_dir}", "--novalidate", "--strategy=mirrored",
    ]


def first_step_loss(model_dir):
    with open(os.path.join(model_dir, "history.csv")) as file:
        return float(next(csv.DictReader(file))["loss"])


@pytest.mark.slow  # three training runs through the CLI
def test_teacher_through_the_cli_under_mirrored(tmp_path, small_demo_voc, teacher_files):
    runs = {}
    for name, extra in (
        ("alone", []),
        ("weight_3", [f"--teacher={teacher_files[21]}"]),
        ("weight_6", [f"--teacher={teacher_files[21]}", "--distill_weight=6"]),
    ):
        model_dir = str(tmp_path / name)
        assert run_program("train_voc.py", *tiny_flags(small_demo_voc), *extra,
                           f"--model_dir={model_dir}") == 0
        runs[name] = first_step_loss(model_dir)
    # Same data, same start: the first step's loss differs by the term alone, which
    # is linear in --distill_weight.
    term = runs["weight_3"] - runs["alone"]
    assert term > 0
    np.testing.assert_allclose(runs["weight_6"] - runs["alone"], 2 * term, rtol=1e-3)
    # The files the run wrote load without the teacher, and hold the student alone.
    student = keras.models.load_model(str(tmp_path / "weight_3" / "last.keras"))
    alone = keras.models.load_model(str(tmp_path / "alone" / "last.keras"))
    assert len(student.weights) == len(alone.weights)
    assert sorted(os.listdir(tmp_path / "weight_3")) == sorted(os.listdir(tmp_path / "alone"))


@pytest.mark.parametrize(
    "teacher, named",
    [
        ("other_classes", ["--teacher", "4 classes", "21"]),
        ("missing.keras", ["--teacher", "missing.keras"]),
        ("emanet_tiny_demo", ["--teacher emanet_tiny_demo", "without weights"]),
    ],
)
def test_an_unfit_teacher_is_refused_before_anything_is_written(
    tmp_path, capsys, small_demo_voc, teacher_files, teacher, named
):
    teacher = teacher_files[4] if teacher == "other_classes" else teacher
    model_dir = tmp_path / "run"
    status = run_program("train_voc.py", *tiny_flags(small_demo_voc), f"--teacher={teacher}",
                         f"--model_dir={model_dir}")
    refusal(capsys, status, "train_voc.py: ", *named)
    assert files_under(model_dir) == []
