"""train_voc.py --recipe <dataset> on each benchmark's fixture, under mirrored, validated in-run.

Two validation images: one per replica (a replica without one fails in Keras' AddN).
"""

import json
import os

import pytest

from ema_keras.data.datasets import get_dataset
from tests.cli_testing import run_program
from tests.data.benchmark_fixtures import (
    write_cityscapes,
    write_coco_stuff_10k,
    write_coco_stuff_164k,
    write_pascal_context,
)

FIXTURES = {
    "cityscapes": lambda root: write_cityscapes(
        root, {"train": {"aachen": 4}, "val": {"frankfurt": 2}}, size=(32, 64)
    ),
    "pascal_context": lambda root: write_pascal_context(
        root, {"train": ["a", "b", "c", "d"], "val": ["e", "f"]}
    ),
    "coco_stuff164k": lambda root: write_coco_stuff_164k(root, {"train2017": 4, "val2017": 2}),
    "coco_stuff10k": lambda root: write_coco_stuff_10k(root, {"train": 4, "test": 2}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_train_recipe_of_each_dataset_trains_validates_and_evaluates(tmp_path, name, capsys):
    root = str(tmp_path / name)
    FIXTURES[name](root)
    model_dir = str(tmp_path / "run")
    status = run_program(
        "train_voc.py", f"--recipe={name}", f"--data_dir={root}", f"--model_dir={model_dir}",
        "--preset=emanet_tiny_demo", "--crop_size=32", "--global_batch_size=2", "--steps=2",
        "--steps_per_checkpoint=2", "--eval_pad_size=64", "--strategy=mirrored", "--verbose=0",
    )
    assert status == 0
    with open(os.path.join(model_dir, "summary.json")) as handle:
        summary = json.load(handle)
    assert summary["step"] == 2 and 0.0 <= summary["val_mean_iou"] <= 1.0, summary
    assert os.path.isfile(os.path.join(model_dir, "best.keras"))

    # eval_voc.py takes the dataset from the run: its split, its class names, its protocol.
    capsys.readouterr()
    assert run_program("eval_voc.py", f"--model_dir={model_dir}") == 0
    printed = capsys.readouterr().out
    dataset = get_dataset(name)
    assert f"| {dataset.class_names[0]} |" in printed
    assert f"| {dataset.class_names[-1]} |" in printed
    assert ("'window': 769" in printed) == (name == "cityscapes"), printed.splitlines()[0]


def test_eval_refuses_an_unknown_dataset(tmp_path, capsys):
    status = run_program("eval_voc.py", f"--model={tmp_path / 'm.keras'}", "--dataset=kitti",
                         f"--data_dir={tmp_path}")
    assert status == 2
    assert "--dataset 'kitti' is unknown" in capsys.readouterr().err


@pytest.mark.parametrize("split, city", [("train", "aachen"), ("val", "frankfurt")])
def test_cityscapes_recipe_refuses_a_corrupt_label_before_step_one(tmp_path, capsys, split, city):
    root = str(tmp_path / "cityscapes")
    FIXTURES["cityscapes"](root)
    bad = os.path.join(root, "gtFine", split, city, f"{city}_000000_000001_gtFine_labelIds.png")
    with open(bad, "rb") as handle:
        data = handle.read()
    with open(bad, "wb") as handle:  # a download cut short
        handle.write(data[: len(data) // 2])
    model_dir = tmp_path / "run"
    status = run_program(
        "train_voc.py", "--recipe=cityscapes", f"--data_dir={root}", f"--model_dir={model_dir}",
        "--preset=emanet_tiny_demo", "--crop_size=32", "--global_batch_size=2", "--steps=2",
        "--steps_per_checkpoint=2", "--eval_pad_size=64", "--strategy=mirrored", "--verbose=0",
    )
    assert status == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and bad in errors[0], errors
    # Refused before step 1: at most the verdict on the other split (a cache, not an output).
    written = sorted(p.name for p in model_dir.iterdir()) if model_dir.exists() else []
    assert written in ([], ["data_check.json"]), written
