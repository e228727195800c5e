"""Your own data through the real programs: ema-keras-validate, train_voc.py, eval_voc.py.

A folder dataset (images/, masks/, classes.txt) in each mask format users
have; refusals say what is wrong in one line, naming the file, before
anything is written into --model_dir.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from ema_keras.data.image_io import load_image, load_label
from tests.cli_testing import run_program
from tests.data.folder_fixtures import CLASS_NAMES, write_folder_dataset

TRAIN_FLAGS = (
    "--recipe=demo", "--crop_size=48", "--global_batch_size=4", "--steps=2",
    "--steps_per_checkpoint=2", "--eval_pad_size=64", "--strategy=mirrored", "--verbose=0",
)


def _train(data_dir, model_dir, *flags, dataset="folder"):
    return run_program(
        "train_voc.py", f"--dataset={dataset}", f"--data_dir={data_dir}",
        f"--model_dir={model_dir}", *TRAIN_FLAGS, *flags,
    )


@pytest.mark.parametrize("masks", ["index", "palette", "colour", "binary255"])
def test_validate_reads_each_mask_format_and_prints_the_class_pixels(tmp_path, capsys, masks):
    ids = write_folder_dataset(str(tmp_path / "data"), masks=masks)
    data_dir = tmp_path / "data"
    assert run_program("ema-keras-validate", "--dataset=folder", f"--data_dir={data_dir}") == 0
    printed = capsys.readouterr().out
    names = ("background", "scratch") if masks == "binary255" else CLASS_NAMES
    expected = np.bincount(
        np.concatenate([(v > 0 if masks == "binary255" else v).ravel() for v in ids.values()]),
        minlength=len(names),
    )
    # Seeded split of 12: 11 train, 1 val; the two tables add up to every pixel.
    counted = np.zeros(len(names), np.int64)
    for line in printed.splitlines():
        for class_id, name in enumerate(names):
            if line.startswith(f"| {class_id} | {name} |"):
                counted[class_id] += int(line.split("|")[3])
    np.testing.assert_array_equal(counted, expected)
    assert "train: 11 pairs" in printed and "val: 1 pairs" in printed
    assert sorted(os.listdir(tmp_path / "data")) == ["classes.txt", "images", "masks"]


def test_binary_masks_of_255_are_refused_unless_declared(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_folder_dataset(data, masks="binary255", classes_txt="background\nscratch\n")
    model_dir = tmp_path / "run"
    assert _train(data, model_dir) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "only class 0 and 255" in error and "scratch =255" not in error
    assert "foreground =255" in error and os.path.join("masks", "part") in error
    assert not model_dir.exists() or "train_config.json" not in os.listdir(model_dir)


def test_refusals_name_the_file_and_write_no_run(tmp_path, capsys):
    data = tmp_path / "data"
    write_folder_dataset(str(data), masks="index")
    # A mask of another size than its image: both sizes named.
    bad = data / "masks" / "part1" / "img003.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(bad)
    model_dir = tmp_path / "run"
    assert _train(str(data), model_dir) == 1
    error = capsys.readouterr().err
    assert str(bad) in error and "20x30" in error and "48x64" in error
    assert not model_dir.exists() or "train_config.json" not in os.listdir(model_dir)
    Image.fromarray(np.full((48, 64), 7, np.uint8)).save(bad)  # an id beyond classes.txt
    assert _train(str(data), model_dir) == 1
    error = capsys.readouterr().err
    assert str(bad) in error and "[7]" in error
    # A clashing --num_classes is a usage error naming classes.txt.
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(bad)
    assert _train(str(data), model_dir, "--num_classes=21") == 1
    error = capsys.readouterr().err
    assert "classes.txt" in error and "declares 3 classes" in error
    assert not model_dir.exists() or "train_config.json" not in os.listdir(model_dir)


def test_exif_rotated_square_jpeg_is_trained_as_displayed(tmp_path):
    data = tmp_path / "data"
    write_folder_dataset(str(data), masks="index", size=(40, 40), nested=False)
    path = data / "images" / "img000.jpg"
    displayed = load_image(str(path))
    # As a phone stores it: pixels rotated, an EXIF tag saying to turn them back (6: 90° CW).
    stored = Image.fromarray(np.rot90(displayed, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif.tobytes())
    from ema_keras.data.converted_masks import materialize
    from ema_keras.data.folder import read_folder

    examples = materialize(read_folder(str(data)), str(tmp_path / "cache"))
    example = next(e for e in examples if e.image_id == "img000")
    assert example.image_path != str(path)  # the displayed pixels, converted
    seen = load_image(example.image_path)
    # The graph now sees what the annotator saw (JPEG re-encoding noise only).
    assert np.abs(seen.astype(int) - displayed.astype(int)).mean() < 3
    assert np.abs(seen.astype(int) - np.rot90(displayed, k=1).astype(int)).mean() > 8
    # The mask lines up: its objects are the objects' colours in the pixels the graph reads.
    mask = load_label(example.label_path)
    assert (mask > 0).any() and np.abs(seen[mask > 0].mean(0) - 128).max() > 40


@pytest.mark.slow
def test_own_data_trains_evaluates_resumes_and_refuses_another_run(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_folder_dataset(data, masks="colour", num_images=16, splits={
        "train": [f"part{i % 2}/img{i:03d}" for i in range(12)],
        "val": [f"part{i % 2}/img{i:03d}" for i in range(12, 16)],
    })
    model_dir = str(tmp_path / "run")
    assert _train(data, model_dir, "--steps=120", "--steps_per_checkpoint=60",
                  "--learning_rate=0.05", "--scales=1.0") == 0
    with open(os.path.join(model_dir, "summary.json")) as handle:
        summary = json.load(handle)
    with open(os.path.join(model_dir, "classes.json")) as handle:
        assert json.load(handle)["names"] == list(CLASS_NAMES)
    with open(os.path.join(model_dir, "train_config.json")) as handle:
        assert json.load(handle)["num_classes"] == 3
    # Measured 0.73 on an AMD EPYC and 0.63 on an Intel Xeon (120 steps, 48x64 images: the
    # tiny model sees them at 6x8); each the same in every run on its CPU, the difference
    # being the CPUs' kernels (oneDNN).
    assert summary["val_mean_iou"] >= 0.58, summary
    capsys.readouterr()
    assert run_program("eval_voc.py", f"--model_dir={model_dir}") == 0
    printed = capsys.readouterr().out
    assert "| scratch |" in printed and "| dent |" in printed and "aeroplane" not in printed
    miou = float(printed.rsplit("mIoU:", 1)[1])
    assert miou >= 58.0, printed  # 64.16 on the Intel Xeon (each image at its own size)
    # The same command resumes (nothing to do); another dataset in that folder is refused.
    assert _train(data, model_dir, "--steps=120", "--steps_per_checkpoint=60",
                  "--learning_rate=0.05", "--scales=1.0") == 0
    other = str(tmp_path / "other")
    write_folder_dataset(other, masks="index", num_images=4)
    before = sorted(os.listdir(model_dir))
    assert _train(other, model_dir, "--steps=120", "--steps_per_checkpoint=60") == 2
    error = capsys.readouterr().err
    assert "--data_dir" in error and "holds another run" in error
    assert sorted(os.listdir(model_dir)) == before
    labels = load_label(os.path.join(model_dir, "converted", "masks", "part0", "img000.png"))
    assert labels.max() <= 2


def _write_export(tmp_path, kind):
    """An annotation tool's export of 20 images; returns (its folder, the --dataset name)."""
    from tests.data import annotation_fixtures as fixtures

    if kind.startswith("cvat"):
        data = fixtures.write_cvat_export(str(tmp_path), zip=kind == "cvat_zip", num_images=20)
        dataset = "cvat"
    elif kind.startswith("labelme"):
        data = fixtures.write_labelme_folder(
            str(tmp_path / "labelme"), embed_image_data=kind == "labelme_embedded", num_images=20
        )
        dataset = "labelme"
    else:
        data, _ = fixtures.write_coco_instances(
            str(tmp_path / "coco"), rle=kind == "coco_rle", num_images=20
        )
        dataset = "coco"
    return data, dataset


@pytest.mark.parametrize(
    "kind", ["cvat_zip", "cvat", "labelme_embedded", "labelme", "coco_rle", "coco_polygons"]
)
def test_annotation_tool_exports_validate_and_write_nothing(tmp_path, capsys, kind):
    data, dataset = _write_export(tmp_path, kind)
    before = sorted(os.listdir(tmp_path))
    assert run_program("ema-keras-validate", f"--dataset={dataset}", f"--data_dir={data}") == 0
    printed = capsys.readouterr().out
    assert "| 1 | box |" in printed and "| 2 | triangle |" in printed
    assert sorted(os.listdir(tmp_path)) == before  # the check writes nothing beside the data


# One export per tool trains and evaluates: the variants within a tool (zip or folder,
# embedded or separate images, RLE or polygons) differ only in reading, which the
# validation above and tests/data/test_annotation_readers.py cover file by file.
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cvat_zip", "labelme_embedded", "coco_polygons"])
def test_annotation_tool_exports_train_and_evaluate(tmp_path, capsys, kind):
    from tests.data import annotation_fixtures as fixtures

    # 20 images: the seeded val split (10%) gives each of the 2 replicas one.
    data, dataset = _write_export(tmp_path, kind)
    model_dir = str(tmp_path / "run")
    assert _train(data, model_dir, dataset=dataset) == 0
    with open(os.path.join(model_dir, "classes.json")) as handle:
        assert json.load(handle)["names"] == list(fixtures.CLASS_NAMES)
    capsys.readouterr()
    assert run_program("eval_voc.py", f"--model_dir={model_dir}") == 0
    assert "| triangle |" in capsys.readouterr().out


def test_predict_on_a_model_of_a_folder_run_uses_its_folder(tmp_path, capsys):
    """predict.py beside a run of your own data: the run's dataset is no benchmark name."""
    from ema_keras.data.class_table import ClassTable
    from ema_keras.models import build_preset
    from ema_keras.training.config import get_recipe
    from ema_keras.training.run_record import record_run

    run = tmp_path / "run"
    run.mkdir()
    config = get_recipe("demo", dataset="folder", data_dir=str(tmp_path), num_classes=3)
    record_run(config, ClassTable.from_names(CLASS_NAMES), str(run))
    model = build_preset("emanet_tiny_demo", num_classes=3, seed=0)
    model.save(run / "best.keras")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(photo)
    out = tmp_path / "out"
    assert run_program("predict.py", f"--model={run / 'best.keras'}", f"--inputs={photo}",
                       f"--output_dir={out}") == 0
    assert load_label(str(out / "photo.png")).shape == (40, 48)
