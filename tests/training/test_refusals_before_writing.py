"""Settings that cannot run, refused by train_voc.py in one line before anything is written.

The data is resolved into --model_dir (the generated demo set, converted
masks, the pre-run check's verdicts), so what depends on the data (the
validation padding, the classes of a run being resumed) is checked from the
files first. Each case runs the program as its command would and lists the
folder afterwards.
"""

import os

import pytest

from ema_keras.data.class_table import ClassTable
from ema_keras.training import run_record
from ema_keras.training.config import get_recipe
from tests.cli_testing import run_program
from tests.data.conftest import write_voc
from tests.data.folder_fixtures import write_folder_dataset


def files_under(folder):
    if not os.path.exists(folder):
        return []
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


def refusal(capsys, status, *named):
    """The one stderr line of a refusal with exit status 2, naming each of `named`."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("pad", ["64", "127", "0", "-1"])
def test_an_eval_pad_size_below_the_demo_images_writes_nothing(tmp_path, capsys, pad):
    model_dir = tmp_path / "run"
    status = run_program("train_voc.py", "--recipe=demo", f"--model_dir={model_dir}",
                         f"--eval_pad_size={pad}")
    # The demo images are at most 128 pixels a side.
    line = refusal(capsys, status, "train_voc.py: ", f"--eval_pad_size={pad}",
                   "--eval_pad_size=128")
    assert "demo_data" not in line
    assert files_under(model_dir) == []  # neither demo_data/ nor data_check.json


def test_the_demo_images_largest_side_is_enough(tmp_path):
    from ema_keras.training.trainer import refuse_before_writing

    refuse_before_writing(get_recipe("demo", eval_pad_size=128), str(tmp_path / "run"))
    assert files_under(tmp_path / "run") == []


def test_an_eval_pad_size_below_a_folders_images_writes_nothing(tmp_path, capsys):
    voc_root, _ = write_voc(str(tmp_path), {"train": ["a1", "a2"], "val": ["v1", "v2"]})
    model_dir = tmp_path / "run"
    status = run_program("train_voc.py", "--recipe=demo", f"--data_dir={voc_root}",
                         f"--model_dir={model_dir}", "--crop_size=32", "--eval_pad_size=40")
    refusal(capsys, status, "--eval_pad_size=40")
    assert files_under(model_dir) == []


def test_freeze_backbone_without_weights_writes_nothing(tmp_path, capsys):
    model_dir = tmp_path / "run"
    status = run_program("train_voc.py", "--recipe=demo", f"--model_dir={model_dir}",
                         "--freeze_backbone")
    refusal(capsys, status, "--freeze_backbone", "--weights", "--backbone_weights")
    assert files_under(model_dir) == []


def test_a_run_of_other_classes_is_refused_before_its_folder_changes(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_folder_dataset(data)
    model_dir = tmp_path / "run"
    # A run started on the same folder when classes.txt named other classes.
    config = get_recipe("demo", dataset="folder", data_dir=data)
    run_record.record_run(config, ClassTable.from_names(["background", "rust"]), str(model_dir))
    before = files_under(model_dir)
    status = run_program("train_voc.py", "--recipe=demo", "--dataset=folder",
                         f"--data_dir={data}", f"--model_dir={model_dir}")
    refusal(capsys, status, "--model_dir", "rust", "scratch")
    assert files_under(model_dir) == before  # no converted/, data_check.json or splits.json
