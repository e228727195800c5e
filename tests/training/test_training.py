import dataclasses
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.data.errors import DataError
from ema_keras.training import (
    SettingsError,
    TrainingDiverged,
    checkpointing,
    curves,
    get_recipe,
    load_config,
    train,
)


def test_chunk_plan_requires_a_checkpoint_at_the_end():
    assert checkpointing.chunk_plan(30, 10) == (3, 10)
    assert checkpointing.chunk_plan(5, 100) == (1, 5)
    with pytest.raises(ValueError, match="--steps_per_checkpoint"):
        checkpointing.chunk_plan(30, 7)


def test_history_skips_the_blanks_csv_logger_writes(tmp_path):
    settings = {"steps": 20, "steps_per_checkpoint": 10}
    (tmp_path / "train_config.json").write_text(json.dumps(settings))
    (tmp_path / "history.csv").write_text(
        "epoch,loss,val_mean_iou\n0,2.5,NA\n1,1.5,0.4\n1,1.25,0.5\n"
    )
    assert curves.read_history(str(tmp_path)) == {
        10: {"epoch": 0.0, "loss": 2.5},
        20: {"epoch": 1.0, "loss": 1.25, "val_mean_iou": 0.5},  # a repeated chunk: last row wins
    }
    assert curves.plot_training_curve(str(tmp_path)).endswith("training_curve.png")


def test_one_device_and_mirrored_fit_the_same_global_batch(tiny_config, tmp_path):
    losses = {}
    for strategy in ("one_device", "mirrored"):
        config = tiny_config(strategy=strategy, steps=2, steps_per_checkpoint=2)
        result = train(config, str(tmp_path / strategy))
        assert result.step == 2
        losses[strategy] = result.history["loss"][0]
    # Same data in the same order; the replicas differ only by dropout draws
    # and by averaging per-replica loss means.
    np.testing.assert_allclose(losses["mirrored"], losses["one_device"], rtol=0.05)


def test_run_writes_its_artifacts_and_a_reloadable_model(tiny_config, tmp_path):
    model_dir = str(tmp_path / "run")
    result = train(tiny_config(validate=True, steps=2, steps_per_checkpoint=1), model_dir)
    artifacts = ("last.keras", "best.keras", "summary.json", "history.csv", "train_config.json",
                 "training_curve.png")
    for name in artifacts:
        assert os.path.isfile(os.path.join(model_dir, name)), name
    with open(os.path.join(model_dir, "summary.json")) as file:
        summary = json.load(file)
    assert summary["step"] == 2 and 0.0 <= summary["val_mean_iou"] <= 1.0
    assert sorted(curves.read_history(model_dir)) == [1, 2]
    assert load_config(model_dir).steps == 2

    reloaded = keras.models.load_model(os.path.join(model_dir, "last.keras"), safe_mode=True)
    images = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        reloaded(images).numpy(), result.model(images, training=False).numpy(), atol=1e-5
    )
    assert summary["first_step_seconds"] > 0
    # Running the same command again resumes at the end, trains nothing more
    # and keeps the recorded result and model.
    recorded = {name: open(os.path.join(model_dir, name), "rb").read()
                for name in ("summary.json", "last.keras", "best.keras")}
    again = train(tiny_config(validate=True, steps=2, steps_per_checkpoint=1), model_dir)
    assert again.step == 2 and again.history == {}
    assert again.val_mean_iou == summary["val_mean_iou"]
    for name, contents in recorded.items():
        assert open(os.path.join(model_dir, name), "rb").read() == contents, name
    # A run stopped after its last checkpoint but before its final files gets them.
    os.remove(os.path.join(model_dir, "summary.json"))
    os.remove(os.path.join(model_dir, "last.keras"))
    finished = train(tiny_config(validate=True, steps=2, steps_per_checkpoint=1), model_dir)
    assert finished.val_mean_iou == pytest.approx(summary["val_mean_iou"])
    assert os.path.isfile(os.path.join(model_dir, "last.keras"))
    with open(os.path.join(model_dir, "summary.json")) as file:
        assert json.load(file)["val_mean_iou"] == pytest.approx(summary["val_mean_iou"])


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    model_dir = str(tmp_path / "diverging")
    # A learning rate this large blows the weights up after the first update.
    config = tiny_config(learning_rate=1e12, steps=4, steps_per_checkpoint=1)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(config, model_dir)
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert latest is not None and latest.endswith("-1")
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name
    assert not os.path.exists(os.path.join(model_dir, "last.keras"))


@pytest.mark.slow
def test_xla_and_mixed_precision_recipes_train(tiny_config, tmp_path):
    # The combinations only: XLA alone trains in the test below (and equals the plain step),
    # each mixed precision alone under mirrored in test_replicas.py; the dtypes checked
    # here do not depend on XLA.
    for name, overrides in {
        "xla_float16": {"jit_compile": True, "mixed_precision": "mixed_float16"},
        "xla_bfloat16": {"jit_compile": True, "mixed_precision": "mixed_bfloat16"},
    }.items():
        config = tiny_config(strategy="one_device", steps=1, **overrides)
        result = train(config, str(tmp_path / name))
        keras.mixed_precision.set_dtype_policy("float32")
        assert np.isfinite(result.history["loss"][0])
        assert result.model.backbone.get_layer("ema_unit").em_attention.bases.dtype == "float32"
        assert result.model.output.dtype == "float32"


@pytest.mark.parametrize("mixed_precision", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_xla_across_replicas_is_refused_before_anything_is_written(
    tiny_config, tmp_path, mixed_precision
):
    model_dir = tmp_path / "run"
    config = tiny_config(strategy="mirrored", jit_compile=True, mixed_precision=mixed_precision)
    with pytest.raises(SettingsError, match=r"--jit_compile .* --strategy mirrored .*one_device"):
        train(config, str(model_dir))
    assert not model_dir.exists()


@pytest.mark.parametrize(
    "policy, min_argmax_agreement", [("mixed_float16", 0.97), ("mixed_bfloat16", 0.8)]
)
def test_mixed_precision_forward_close_to_float32(policy, min_argmax_agreement):
    from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
    from ema_keras.losses import MaskedSparseCrossEntropy
    from ema_keras.models import EMANetImageSegmenter

    rng = np.random.default_rng(5)
    # Raw pixels (what the models take) that normalise to a standard normal.
    normalized = rng.normal(size=(2, 64, 64, 3))
    images = (normalized * IMAGENET_STD + IMAGENET_MEAN).astype("float32")
    labels = rng.integers(0, 21, size=(2, 64, 64)).astype("int32")
    logits = {}
    for name in ("float32", policy):
        keras.mixed_precision.set_dtype_policy(name)
        keras.utils.set_random_seed(7)
        model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", dropout=0.0, seed=7)
        logits[name] = model(images, training=True).numpy()
        assert logits[name].dtype == np.float32
    agreement = (logits[policy].argmax(-1) == logits["float32"].argmax(-1)).mean()
    assert agreement >= min_argmax_agreement
    loss = MaskedSparseCrossEntropy()
    np.testing.assert_allclose(
        float(loss(labels, logits[policy])), float(loss(labels, logits["float32"])), rtol=1e-3
    )


@pytest.mark.slow
def test_xla_train_step_equals_plain_train_step_without_dropout(tiny_config):
    from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
    from ema_keras.models import EMANetImageSegmenter
    from ema_keras.training import trainer

    rng = np.random.default_rng(5)
    # Raw pixels (what the models take) that normalise to a standard normal.
    images = (rng.normal(size=(2, 64, 64, 3)) * IMAGENET_STD + IMAGENET_MEAN).astype("float32")
    labels = rng.integers(0, 21, size=(2, 64, 64)).astype("int32")
    outcomes = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(7)
        model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", dropout=0.0, seed=7)
        trainer.compile_model(model, tiny_config(jit_compile=jit_compile))
        losses = [float(model.train_on_batch(images, labels)[0]) for _ in range(2)]
        bases = model.backbone.get_layer("ema_unit").em_attention.bases.numpy()
        outcomes.append((losses, bases))
    # XLA's CPU fusions reorder float32 sums: agreement to ~1e-4, not bit-exact.
    np.testing.assert_allclose(outcomes[1][0], outcomes[0][0], rtol=1e-3)
    np.testing.assert_allclose(outcomes[1][1], outcomes[0][1], atol=1e-3)


def test_trainaug_from_a_raw_sbd_folder_trains_on_converted_labels(tmp_path):
    from ema_keras.data.image_io import load_label
    from ema_keras.data.training_data import resolve_training_data
    from ema_keras.training import get_recipe
    from tests.data.conftest import write_sbd, write_voc

    voc_root, _ = write_voc(str(tmp_path), {"train": ["a1", "a2"], "val": ["v1"]})
    sbd_root, sbd_labels = write_sbd(str(tmp_path), {"train": ["s1", "v1"], "val": ["s2"]})
    config = get_recipe(
        "demo", data_dir=voc_root, sbd_dir=sbd_root, train_split="trainaug", crop_size=32,
        global_batch_size=2, steps=1, steps_per_checkpoint=1, validate=False, verbose=0,
        strategy="one_device",
    )
    model_dir = str(tmp_path / "run")
    examples = resolve_training_data(config, model_dir).train
    assert [e.image_id for e in examples] == ["a1", "a2", "s1", "s2"]  # VOC val excluded
    for example in examples[2:]:
        assert example.label_path.endswith(".png")
        np.testing.assert_array_equal(load_label(example.label_path), sbd_labels[example.image_id])
    # VOC's own PNG labels pass through; a resumed run reuses the converted PNGs.
    assert examples[0].label_path.endswith(os.path.join("SegmentationClass", "a1.png"))
    written = {e.label_path: os.stat(e.label_path).st_mtime_ns for e in examples[2:]}
    again = resolve_training_data(config, model_dir).train
    assert again == examples
    assert {p: os.stat(p).st_mtime_ns for p in written} == written
    assert train(config, model_dir).step == 1


@pytest.mark.parametrize(
    "kind", ["truncated_jpeg", "rgba_png_named_jpg", "label_value_30_in_a_corner"]
)
@pytest.mark.parametrize("split", ["train", "val"])
def test_training_refuses_a_bad_file_before_writing_anything(tmp_path, kind, split):
    from tests.data.conftest import spoil, write_voc

    voc_root, _ = write_voc(str(tmp_path), {"train": ["a1", "a2", "a3"], "val": ["v1", "v2"]})
    bad = spoil(voc_root, "a2" if split == "train" else "v2", kind)
    model_dir = tmp_path / "run"
    config = get_recipe("demo", data_dir=voc_root, crop_size=32, global_batch_size=2, steps=1,
                        steps_per_checkpoint=1, validate=True, eval_pad_size=64, verbose=0,
                        strategy="one_device")
    with pytest.raises(DataError, match=re.escape(bad)):
        train(config, str(model_dir))
    # At most the verdict on the other split, which passed (a cache, not an output).
    written = sorted(p.name for p in model_dir.iterdir()) if model_dir.exists() else []
    assert written in ([], ["data_check.json"]), written


def test_eval_pad_size_smaller_than_a_validation_image_is_refused_up_front(tmp_path):
    from PIL import Image

    from tests.data.conftest import write_voc

    voc_root, _ = write_voc(str(tmp_path), {"train": ["a1", "a2"], "val": ["v1", "v2"]})
    images = [os.path.join(voc_root, "JPEGImages", f"{i}.jpg") for i in ("v1", "v2")]
    sizes = [Image.open(path).size for path in images]
    needed = max(max(w for w, _ in sizes), max(h for _, h in sizes))
    config = get_recipe("demo", data_dir=voc_root, crop_size=32, global_batch_size=2, steps=1,
                        steps_per_checkpoint=1, validate=True, eval_pad_size=needed - 1, verbose=0,
                        strategy="one_device")
    expected = rf"--eval_pad_size={needed - 1} .*--eval_pad_size={needed} "
    with pytest.raises(SettingsError, match=expected):
        train(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "train_config.json")
    assert train(dataclasses.replace(config, eval_pad_size=needed), str(tmp_path / "run")).step == 1


@pytest.mark.slow
def test_train_voc_cli_names_the_bad_file_in_one_line(tmp_path):
    import subprocess
    import sys

    from tests.data.conftest import spoil, write_voc

    voc_root, _ = write_voc(str(tmp_path), {"train": ["a1", "a2"], "val": ["v1"]})
    bad = spoil(voc_root, "a1", "truncated_jpeg")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    model_dir = tmp_path / "run"
    command = [sys.executable, os.path.join(repo, "recipes", "train_voc.py"), "--recipe=demo",
               f"--data_dir={voc_root}", f"--model_dir={model_dir}", "--strategy=mirrored",
               "--steps=1", "--steps_per_checkpoint=1", "--crop_size=32", "--eval_pad_size=64"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="3"))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("train_voc.py:")]
    assert len(errors) == 1 and bad in errors[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert not (model_dir / "train_config.json").exists()


def test_training_curve_is_drawn_without_matplotlib(tmp_path):
    from PIL import Image

    path = str(tmp_path / "curve.png")
    steps, losses, mious = [10, 20, 30, 40], [4.0, 3.0, 2.0, 1.0], [None, 0.4, 0.6, 0.8]
    curves.draw_training_curve(path, steps, losses, mious)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.shape == (curves.SIZE[1], curves.SIZE[0], 3)
    left, top, right, bottom = curves.PLOT_BOX

    def drawn_height(color, step):
        """Height above the x axis, as a fraction of the plot, of `color` in the step's column."""
        x = round(left + (step - steps[0]) / (steps[-1] - steps[0]) * (right - left))
        x = min(max(x, left + 2), right - 2)
        column = pixels[top : bottom + 1, x]
        rows = np.flatnonzero((column == color).all(axis=-1))
        assert rows.size, (color, step)
        return (bottom - (top + rows.mean())) / (bottom - top)

    # mIoU is on a fixed 0..1 axis: the drawn height is the value.
    for step, miou in zip(steps[1:], mious[1:]):
        assert drawn_height(curves.MIOU_COLOR, step) == pytest.approx(miou, abs=0.03)
    # The loss axis starts at 0: heights are proportional to the losses.
    heights = [drawn_height(curves.LOSS_COLOR, step) for step in steps]
    np.testing.assert_allclose(
        np.array(heights) / heights[0], np.array(losses) / losses[0], atol=0.04
    )
    # No validation yet (the first step): nothing green in its column.
    column = pixels[top : bottom + 1, left + 1]
    assert not (column == curves.MIOU_COLOR).all(axis=-1).any()


@pytest.mark.slow
def test_mobile_recipe_trains_through_the_trainer(tiny_config, tmp_path):
    from ema_keras.models import MobileEMANetBackbone

    config = tiny_config(preset="emanet_mobilenetv3_small_voc", steps=1, validate=True)
    result = train(config, str(tmp_path / "run"))
    assert isinstance(result.model.backbone, MobileEMANetBackbone)
    assert result.step == 1 and np.isfinite(result.history["loss"][0])
    assert 0.0 <= result.val_mean_iou <= 1.0
