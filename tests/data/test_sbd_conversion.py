"""SBD .mat -> PNG: each PNG knows its source, is redone when it changes, and checks ids."""

import os

import numpy as np
import pytest
import scipy.io

from ema_keras.data import image_io, voc
from ema_keras.data.errors import CorruptFileError, LabelValueError
from tests.data.conftest import write_sbd


@pytest.fixture
def sbd(tmp_path):
    sbd_root, labels = write_sbd(str(tmp_path), {"train": ["m1", "m2"]}, size=(16, 20))
    return voc.read_sbd_split(sbd_root, "train"), labels, str(tmp_path / "converted")


def _mtimes(examples):
    return {e.label_path: os.stat(e.label_path).st_mtime_ns for e in examples}


def _rewrite_mat(path, label):
    before = os.stat(path).st_mtime_ns
    scipy.io.savemat(path, {"GTcls": {"Segmentation": label}})
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a coarse clock still sees a change


def test_png_records_its_source_and_is_kept_while_the_mat_is_unchanged(sbd):
    examples, labels, output_dir = sbd
    converted = image_io.convert_sbd_to_png(examples, output_dir, num_classes=21)
    for example, png in zip(examples, converted):
        np.testing.assert_array_equal(image_io.load_label(png.label_path), labels[png.image_id])
        record = image_io._recorded_source(png.label_path)
        stat = os.stat(example.label_path)
        assert record == {
            "path": os.path.abspath(example.label_path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "num_classes": 21,
        }
    written = _mtimes(converted)
    assert image_io.convert_sbd_to_png(examples, output_dir, num_classes=21) == converted
    assert image_io.convert_sbd_to_png(examples, output_dir) == converted  # no check asked
    assert _mtimes(converted) == written


def test_stale_png_is_redone_after_the_mat_changes(sbd):
    examples, labels, output_dir = sbd
    converted = image_io.convert_sbd_to_png(examples, output_dir)
    written = _mtimes(converted)
    new_label = np.full_like(labels["m2"], 7)
    _rewrite_mat(examples[1].label_path, new_label)
    again = image_io.convert_sbd_to_png(examples, output_dir)
    np.testing.assert_array_equal(image_io.load_label(again[1].label_path), new_label)
    assert _mtimes(again)[again[0].label_path] == written[again[0].label_path]


def test_png_of_an_older_converter_without_a_record_is_redone(sbd):
    examples, labels, output_dir = sbd
    os.makedirs(output_dir)
    stale = np.zeros_like(labels["m1"])
    with open(os.path.join(output_dir, "m1.png"), "wb") as handle:
        handle.write(image_io.encode_label_png(stale))
    converted = image_io.convert_sbd_to_png(examples, output_dir)
    np.testing.assert_array_equal(image_io.load_label(converted[0].label_path), labels["m1"])


def test_ids_beyond_num_classes_are_refused_naming_the_mat(sbd):
    examples, labels, output_dir = sbd
    label = labels["m2"].copy()
    label[-1, -1] = 30
    _rewrite_mat(examples[1].label_path, label)
    # Converted unchecked first: asking for the check later re-reads the source.
    image_io.convert_sbd_to_png(examples, output_dir)
    with pytest.raises(LabelValueError, match=r"cls/m2\.mat.*\[30\]"):
        image_io.convert_sbd_to_png(examples, output_dir, num_classes=21)
    assert not [name for name in os.listdir(output_dir) if name.endswith(".partial")]


def test_corrupt_mat_leaves_no_partial_file(sbd):
    examples, _, output_dir = sbd
    with open(examples[1].label_path, "r+b") as handle:
        handle.truncate(150)
    with pytest.raises(CorruptFileError, match=r"cls/m2\.mat"):
        image_io.convert_sbd_to_png(examples, output_dir, num_classes=21)
    assert sorted(os.listdir(output_dir)) == ["m1.png"]


def test_an_error_while_writing_removes_the_partial_file(sbd, monkeypatch):
    examples, _, output_dir = sbd

    def fail_to_rename(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(image_io.os, "replace", fail_to_rename)
    with pytest.raises(OSError, match="disk full"):
        image_io.convert_sbd_to_png(examples, output_dir)
    assert os.listdir(output_dir) == []
