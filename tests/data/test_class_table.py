"""classes.txt: names, colours, declared values, ignore lines; masks read by the table; splits."""

import json
import os

import numpy as np
import pytest

from ema_keras.data import splits
from ema_keras.data.class_table import ClassTable, ClassTableError, parse_class_lines
from ema_keras.data.errors import DataError, LabelValueError, UnsupportedModeError
from ema_keras.data.folder import read_folder
from ema_keras.data.voc import voc_colormap
from tests.data.folder_fixtures import write_folder_dataset


def test_index_table_takes_line_numbers_and_voc_colours_for_display():
    table = parse_class_lines(["background", "", "# a comment", "traffic light  # inline"], "c")
    assert table.names == ("background", "traffic light") and not table.needs_conversion
    assert table.palette == tuple(tuple(int(c) for c in voc_colormap()[i]) for i in range(2))
    mask = np.array([[0, 1], [255, 1]])
    np.testing.assert_array_equal(table.ids_of_mask(mask, "m.png"), mask)
    with pytest.raises(LabelValueError, match=r"m.png: mask value\(s\) \[2\]"):
        table.ids_of_mask(np.array([[0, 2]]), "m.png")


def test_colour_table_maps_colours_and_ignores_declared_ones():
    table = parse_class_lines(["road 128,64,128", "car 0, 0, 142", "__ignore__ 0,0,0"], "c")
    assert table.colours == ((128, 64, 128), (0, 0, 142)) and table.palette == table.colours
    mask = np.array([[[128, 64, 128], [0, 0, 142], [0, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(table.ids_of_mask(mask, "m.png"), [[0, 1, 255]])
    with pytest.raises(LabelValueError, match=r"colour\(s\) \[\(1, 2, 3\)\]"):
        table.ids_of_mask(np.array([[[1, 2, 3]]], np.uint8), "m.png")
    with pytest.raises(UnsupportedModeError, match="not an RGB colour mask"):
        table.ids_of_mask(np.zeros((2, 2), np.uint8), "m.png")


def test_declared_values_make_255_a_class_and_refuse_others():
    table = parse_class_lines(["background", "defect =255"], "c")
    assert table.stored_values == (0, 255) and table.needs_conversion
    np.testing.assert_array_equal(table.ids_of_mask(np.array([[0, 255]]), "m"), [[0, 1]])
    # 1 is no longer a class's value: refused, not silently "defect".
    with pytest.raises(LabelValueError, match=r"\[1\]"):
        table.ids_of_mask(np.array([[1]]), "m")
    assert ClassTable.from_json(json.loads(json.dumps(table.to_json()))) == table


@pytest.mark.parametrize(
    "lines, message",
    [
        ([], "lists no class"),
        (["a", "a"], "listed twice"),
        (["a 1,2,3", "b"], "'b' has none"),
        (["a 1,2,3", "b =4"], "'b' has none"),
        (["a 1,2,300"], "above 255"),
        (["a", "b =256"], "not an 8-bit"),
        (["a 1,2,3", "b 1,2,3"], r"colour \(1, 2, 3\) stands for two classes"),
        (["__ignore__"], "needs a colour"),
    ],
)
def test_bad_class_lists_are_refused_naming_the_file(lines, message):
    with pytest.raises(ClassTableError, match=message) as raised:
        parse_class_lines(lines, "data/classes.txt")
    assert str(raised.value).startswith("data/classes.txt")


def test_folder_pairs_by_relative_path_and_lists_what_it_leaves_out(tmp_path):
    root = tmp_path / "data"
    write_folder_dataset(str(root), num_images=4)
    (root / "images" / "part0" / "lonely.jpg").write_bytes(
        (root / "images" / "part0" / "img000.jpg").read_bytes()
    )
    mask = (root / "masks" / "part0" / "img000.png").read_bytes()
    (root / "masks" / "orphan.png").write_bytes(mask)
    found = read_folder(str(root))
    assert [i.image_id for i in found.images] == [
        "part0/img000", "part0/img002", "part1/img001", "part1/img003"
    ]
    assert sorted(why for _, why in found.left_out) == [
        "mask without an image in images/", "no mask in masks/"
    ]
    # Index PNGs of ids are read as they are; nothing to convert.
    assert all(i.mask_path and i.render is None for i in found.images)
    (root / "masks" / "part0" / "img002.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="img002.jpg has the same name without extension"):
        read_folder(str(root))


def test_seeded_split_is_deterministic_recorded_and_reused(tmp_path):
    root = tmp_path / "data"
    write_folder_dataset(str(root), num_images=20)
    found = read_folder(str(root))
    val, how = splits.split_ids(found, "val", val_fraction=0.25, seed=3, run_dir=str(tmp_path))
    train, _ = splits.split_ids(found, "train", val_fraction=0.25, seed=3, run_dir=str(tmp_path))
    assert len(val) == 5 and not set(val) & set(train) and len(train) == 15
    assert "seeded" in how and not os.path.exists(tmp_path / splits.SPLITS_FILE)
    splits.record_split(str(tmp_path), found, val_fraction=0.25, seed=3)
    # Another seed now changes nothing: the run's record wins.
    again, how = splits.split_ids(found, "val", val_fraction=0.5, seed=9, run_dir=str(tmp_path))
    assert again == val and "recorded" in how
    other, _ = splits.split_ids(found, "val", val_fraction=0.25, seed=4)
    assert other != val
    os.remove(root / "images" / f"{val[0]}.jpg")
    with pytest.raises(DataError, match="no longer in"):
        splits.split_ids(read_folder(str(root)), "val", run_dir=str(tmp_path))
