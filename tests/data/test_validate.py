"""Each bad input is reported with its file, by the readers and by the validator."""

import os

import numpy as np
import pytest
from PIL import Image

from ema_keras.data import image_io, validate
from ema_keras.data.errors import (
    CorruptFileError,
    EmptySplitError,
    LabelValueError,
    MissingFileError,
    SizeMismatchError,
    UnsupportedModeError,
)


def _paths(voc_root, image_id):
    return (
        os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg"),
        os.path.join(voc_root, "SegmentationClass", f"{image_id}.png"),
    )


def _only_problem(voc_root, error_type, path):
    problems = validate.validate_dataset(voc_root)
    assert len(problems) == 1, problems
    assert isinstance(problems[0], error_type)
    assert problems[0].path == path and path in str(problems[0])
    return problems[0]


def test_clean_fixture_has_no_problem(voc_fixture):
    assert validate.validate_dataset(voc_fixture[0], splits=("train", "val")) == []


def test_corrupt_jpeg(voc_fixture):
    image_path, _ = _paths(voc_fixture[0], "2007_000002")
    with open(image_path, "r+b") as handle:  # keep the header, cut the data
        handle.truncate(300)
    with pytest.raises(CorruptFileError, match="2007_000002.jpg"):
        image_io.load_image(image_path)
    _only_problem(voc_fixture[0], CorruptFileError, image_path)


def test_corrupt_png(voc_fixture):
    _, label_path = _paths(voc_fixture[0], "2007_000004")
    with open(label_path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(CorruptFileError, match="2007_000004.png"):
        image_io.load_label(label_path)
    _only_problem(voc_fixture[0], CorruptFileError, label_path)


def test_image_and_label_sizes_differ(voc_fixture):
    voc_root, labels = voc_fixture
    _, label_path = _paths(voc_root, "2007_000001")
    image_io.save_palette_png(labels["2007_000001"][:, :-1], label_path)
    problem = _only_problem(voc_root, SizeMismatchError, label_path)
    assert "2007_000001.jpg" in str(problem)


def test_label_ids_beyond_num_classes(voc_fixture):
    voc_root, labels = voc_fixture
    _, label_path = _paths(voc_root, "2007_000003")
    label = labels["2007_000003"].copy()
    label[0, 0] = 21
    label[1, 1] = 254
    image_io.save_palette_png(label, label_path)
    with pytest.raises(LabelValueError, match=r"2007_000003.png.*\[21, 254\]"):
        image_io.load_label(label_path, num_classes=21)
    _only_problem(voc_root, LabelValueError, label_path)
    # 255 alone is the ignore label, never a problem; fewer classes make 20 a problem.
    assert any(
        isinstance(p, LabelValueError) for p in validate.validate_dataset(voc_root, num_classes=5)
    )


def test_split_naming_a_missing_id(voc_fixture):
    voc_root = voc_fixture[0]
    with open(os.path.join(voc_root, "ImageSets", "Segmentation", "val.txt"), "a") as handle:
        handle.write("2011_000404\n")
    problems = validate.validate_dataset(voc_root)
    assert sorted(type(p).__name__ for p in problems) == ["MissingFileError", "MissingFileError"]
    assert {os.path.basename(p.path) for p in problems} == {"2011_000404.jpg", "2011_000404.png"}


def test_empty_split(voc_fixture):
    voc_root = voc_fixture[0]
    split_path = os.path.join(voc_root, "ImageSets", "Segmentation", "val.txt")
    open(split_path, "w").close()
    _only_problem(voc_root, EmptySplitError, split_path)


def test_missing_split_file(voc_fixture):
    problems = validate.validate_dataset(voc_fixture[0], splits=("train", "test"))
    assert [type(p) for p in problems] == [MissingFileError]
    assert problems[0].path.endswith("test.txt")


def test_grayscale_jpeg_is_converted_not_reported(voc_fixture):
    voc_root, _ = voc_fixture
    image_path, _ = _paths(voc_root, "2007_000005")
    gray = np.asarray(Image.open(image_path).convert("L"))
    Image.fromarray(gray).save(image_path, quality=95)
    image = image_io.load_image(image_path)
    assert image.shape == gray.shape + (3,)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    assert validate.validate_dataset(voc_root) == []


def test_cmyk_jpeg_is_converted_not_reported(voc_fixture):
    voc_root, _ = voc_fixture
    image_path, _ = _paths(voc_root, "2007_000005")
    Image.open(image_path).convert("CMYK").save(image_path, quality=95)
    assert image_io.load_image(image_path).shape[-1] == 3
    assert validate.validate_dataset(voc_root) == []


def test_rgba_image_is_rejected(voc_fixture):
    voc_root, _ = voc_fixture
    image_path, _ = _paths(voc_root, "2007_000002")
    rgba = Image.open(image_path).convert("RGBA")
    rgba.save(image_path, format="PNG")  # a PNG under a .jpg name, as happens
    with pytest.raises(UnsupportedModeError, match=r"2007_000002.jpg.*'RGBA'"):
        image_io.load_image(image_path)
    _only_problem(voc_root, UnsupportedModeError, image_path)


def test_palette_other_than_voc_is_reported(voc_fixture):
    voc_root, labels = voc_fixture
    _, label_path = _paths(voc_root, "2007_000001")
    image = Image.open(label_path)
    palette = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)
    image.putpalette(palette[::-1].tobytes())  # indices unchanged, colours not VOC's
    image.save(label_path)
    np.testing.assert_array_equal(image_io.load_label(label_path), labels["2007_000001"])
    problem = _only_problem(voc_root, UnsupportedModeError, label_path)
    assert "palette" in str(problem)


def run_validator(*args):
    """`ema-keras-validate` in this process, through the shared start-up (see tests/cli_testing)."""
    from tests.cli_testing import run_program

    return run_program("ema-keras-validate", *args)


def test_all_problems_reported_at_once_and_cli_exit_code(voc_fixture, capsys):
    voc_root, labels = voc_fixture
    image_path, _ = _paths(voc_root, "2007_000002")
    with open(image_path, "wb") as handle:
        handle.write(b"not a jpeg")
    _, label_path = _paths(voc_root, "2007_000004")
    image_io.save_palette_png(labels["2007_000004"][:-2], label_path)
    os.remove(_paths(voc_root, "2007_000005")[1])
    problems = validate.validate_dataset(voc_root)
    assert {type(p) for p in problems} == {CorruptFileError, SizeMismatchError, MissingFileError}

    assert run_validator(f"--data_dir={voc_root}", "--splits=train,val") == 1
    output = capsys.readouterr()
    for name in ("2007_000002.jpg", "2007_000004.png", "2007_000005.png"):
        assert name in output.out
    assert "3 problem(s)" in output.err


def test_cli_ok(voc_fixture, capsys):
    assert run_validator(voc_fixture[0]) == 0  # the folder may also be given bare
    assert "OK" in capsys.readouterr().out


def test_trainaug_validation_with_sbd(tmp_path):
    from tests.data.conftest import write_sbd, write_voc

    voc_root, _ = write_voc(str(tmp_path), {"train": ["t1"], "val": ["v1"]})
    sbd_root, _ = write_sbd(str(tmp_path), {"train": ["s1", "v1"], "val": ["s2"]})
    assert validate.validate_dataset(voc_root, splits=("trainaug",), sbd_root=sbd_root) == []
    os.remove(os.path.join(sbd_root, "dataset", "cls", "s2.mat"))
    problems = validate.validate_dataset(voc_root, splits=("trainaug",), sbd_root=sbd_root)
    assert [os.path.basename(p.path) for p in problems] == ["s2.mat"]
