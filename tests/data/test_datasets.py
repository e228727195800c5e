"""The dataset descriptions: readers, label maps (pixel by pixel), validation, TFRecords."""

import os

import numpy as np
import pytest
from PIL import Image

from ema_keras.data import cityscapes, coco_stuff, datasets, pascal_context, voc
from ema_keras.data.decode import examples_dataset
from ema_keras.data.errors import MissingFileError
from ema_keras.data.image_io import convert_sbd_to_png, load_label
from ema_keras.data.preflight import preflight_check
from ema_keras.data.tfrecords import read_tfrecords, write_tfrecords
from ema_keras.data.validate import validate_dataset
from tests.data.benchmark_fixtures import (
    CITYSCAPES_STORED,
    MMSEG_COCO_164K_STORED_IDS,
    MMSEG_COCO_164K_TABLE,
    write_cityscapes,
    write_coco_stuff_10k,
    write_coco_stuff_164k,
    write_pascal_context,
)

# cityscapesScripts helpers/labels.py, id -> trainId, transcribed on its own here
# (not read from the package) so that the package's table is checked against it.
OFFICIAL_CITYSCAPES_TRAIN_IDS = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255,
    11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8,
    22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16,
    32: 17, 33: 18, -1: 255,
}  # fmt: skip
# mmsegmentation's coco_stuff164k.py clsID_to_trID, at the places where ids are skipped.
MMSEG_COCO_164K_SAMPLES = {0: 0, 10: 10, 12: 11, 24: 23, 26: 24, 27: 25, 30: 26, 43: 39,
                           45: 40, 91: 80, 181: 170}  # fmt: skip


def _expected_cityscapes(stored):
    table = {value % 256: train for value, train in OFFICIAL_CITYSCAPES_TRAIN_IDS.items()}
    return np.vectorize(lambda v: table.get(int(v), 255), otypes=[np.uint8])(stored)


def _decoded_labels(examples):
    return {
        e["image_id"].decode(): e["label"] for e in examples_dataset(examples).as_numpy_iterator()
    }


@pytest.fixture
def cityscapes_root(tmp_path):
    labels = write_cityscapes(
        tmp_path / "cityscapes", {"train": {"aachen": 2, "bochum": 1}, "val": {"frankfurt": 1}}
    )
    return str(tmp_path / "cityscapes"), labels


def test_cityscapes_ids_map_to_train_ids_pixel_by_pixel(cityscapes_root):
    root, stored = cityscapes_root
    examples = cityscapes.read_split(root, "train") + cityscapes.read_split(root, "val")
    assert [e.image_id for e in examples] == [
        "aachen_000000_000000", "aachen_000000_000001", "bochum_000000_000000",
        "frankfurt_000000_000000",
    ]  # fmt: skip
    for example in examples:  # every ignored id (0-6, 9, 10, 14-16, 18, 29, 30, -1) is there
        assert set(np.unique(stored[example.image_id])) == set(CITYSCAPES_STORED)
    in_graph = _decoded_labels(examples)
    for example in examples:
        expected = _expected_cityscapes(stored[example.image_id])
        mapped = load_label(example.label_path, label_map=example.label_map)
        np.testing.assert_array_equal(mapped, expected)
        np.testing.assert_array_equal(in_graph[example.image_id], expected)
    assert cityscapes.CLASSES[0] == "road" and cityscapes.CLASSES[-1] == "bicycle"
    assert len(cityscapes.CLASSES) == 19 and cityscapes.PALETTE[0] == (128, 64, 128)


def test_cityscapes_missing_label_and_wrong_folder_are_named(cityscapes_root):
    root, _ = cityscapes_root
    gt = os.path.join(root, "gtFine", "val", "frankfurt")
    os.remove(os.path.join(gt, "frankfurt_000000_000000_gtFine_labelIds.png"))
    with pytest.raises(MissingFileError, match="leftImg8bit/val.*1 file.*frankfurt_000000_000000"):
        cityscapes.read_split(root, "val")
    with pytest.raises(MissingFileError, match="no Cityscapes folder"):
        cityscapes.read_split(os.path.join(root, "gtFine"), "val")


@pytest.mark.parametrize(
    "dataset, expected_of",
    [
        (pascal_context.DATASET, lambda s: np.where(s == 0, 255, s - 1)),
        (pascal_context.DATASET_60, lambda s: s),
    ],
)
def test_pascal_context_both_conventions(tmp_path, dataset, expected_of):
    stored = write_pascal_context(tmp_path, {"train": ["2008_000002"], "val": ["2008_000008"]})
    examples = dataset.read_split(str(tmp_path), "val")
    assert [e.image_id for e in examples] == ["2008_000008"]
    label_path, label_map = examples[0].label_path, examples[0].label_map
    label = load_label(label_path, dataset.num_classes, label_map=label_map)
    np.testing.assert_array_equal(label, expected_of(stored["2008_000008"].astype(np.int32)))
    np.testing.assert_array_equal(_decoded_labels(examples)["2008_000008"], label)
    assert dataset.num_classes == {"pascal_context": 59, "pascal_context_60": 60}[dataset.name]


def test_coco_stuff_164k_stuffthingmaps_and_train_id_maps_agree(tmp_path):
    stored = write_coco_stuff_164k(tmp_path / "a", {"val2017": 2})
    write_coco_stuff_164k(tmp_path / "b", {"val2017": 2}, train_ids=True)
    raw = coco_stuff.read_164k_split(str(tmp_path / "a"), "val2017")
    converted = coco_stuff.read_164k_split(str(tmp_path / "b"), "val2017")
    assert raw[0].label_map == coco_stuff.LABEL_MAP_164K and converted[0].label_map is None
    assert converted[0].label_path.endswith("000000000001_labelTrainIds.png")
    table = np.frombuffer(coco_stuff.LABEL_MAP_164K, np.uint8)
    assert len(MMSEG_COCO_164K_STORED_IDS) == 171
    np.testing.assert_array_equal(table, MMSEG_COCO_164K_TABLE)  # every id, not a sample
    assert {k: int(table[k]) for k in MMSEG_COCO_164K_SAMPLES} == MMSEG_COCO_164K_SAMPLES
    unused = [11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90, 182, 254, 255]
    assert all(table[i] == 255 for i in unused) and sorted(set(table) - {255}) == list(range(171))
    for a, b in zip(raw, converted):
        np.testing.assert_array_equal(
            load_label(a.label_path, 171, label_map=a.label_map), load_label(b.label_path, 171)
        )
        np.testing.assert_array_equal(
            load_label(a.label_path, label_map=a.label_map), table[stored[a.image_id]]
        )


def test_coco_stuff_10k_mat_labels_through_tfrecords_and_png_conversion(tmp_path):
    stored = write_coco_stuff_10k(tmp_path, {"train": 2, "test": 1})
    examples = coco_stuff.read_10k_split(str(tmp_path), "train")
    table = MMSEG_COCO_164K_TABLE  # 10k's .mat ids are the stored ids + 1
    expected = {
        i: np.where(s == 0, 255, table[(s.astype(np.int32) - 1) % 256]) for i, s in stored.items()
    }
    write_tfrecords(examples, tmp_path / "records", 2, prefix="coco10k")
    from_records = {
        e["image_id"].decode(): e["label"]
        for e in read_tfrecords(tmp_path / "records" / "coco10k-*.tfrecord").as_numpy_iterator()
    }
    converted = convert_sbd_to_png(examples, tmp_path / "pngs", num_classes=171)
    from_pngs = _decoded_labels(converted)
    for example in examples:
        np.testing.assert_array_equal(from_records[example.image_id], expected[example.image_id])
        np.testing.assert_array_equal(from_pngs[example.image_id], expected[example.image_id])
    with pytest.raises(ValueError, match=r"\.mat labels .*cannot be decoded"):
        examples_dataset(examples)


def test_validator_summarises_every_dataset(tmp_path, cityscapes_root):
    root, _ = cityscapes_root
    write_pascal_context(tmp_path / "ctx", {"train": ["a"], "val": ["b", "c"]})
    write_coco_stuff_164k(tmp_path / "coco", {"train2017": 1, "val2017": 1})
    write_coco_stuff_10k(tmp_path / "coco10k", {"train": 1, "test": 1})
    for name, folder, pairs in (
        ("cityscapes", root, {"train": 3, "val": 1}),
        ("pascal_context", tmp_path / "ctx", {"train": 1, "val": 2}),
        ("pascal_context_60", tmp_path / "ctx", {"train": 1, "val": 2}),
        ("coco_stuff164k", tmp_path / "coco", {"train2017": 1, "val2017": 1}),
        ("coco_stuff10k", tmp_path / "coco10k", {"train": 1, "test": 1}),
    ):
        summaries = []
        assert validate_dataset(folder, dataset=name, summaries=summaries) == []
        assert {s.split: s.num_pairs for s in summaries} == pairs
        classes = datasets.get_dataset(name).num_classes
        assert all(max(set(s.label_ids) - {255}) < classes for s in summaries)
    cityscapes_val = []
    validate_dataset(root, ["val"], dataset="cityscapes", summaries=cityscapes_val)
    assert str(cityscapes_val[0]) == (
        "val: 1 pairs, images 32x64, ids 0..18 (19 distinct), 255 (ignored)"
    )


def test_validator_names_a_missing_label_and_a_size_mismatch(cityscapes_root):
    root, _ = cityscapes_root
    gt = os.path.join(root, "gtFine", "train", "aachen")
    os.remove(os.path.join(gt, "aachen_000000_000000_gtFine_labelIds.png"))
    smaller = os.path.join(gt, "aachen_000000_000001_gtFine_labelIds.png")
    Image.fromarray(np.zeros((16, 64), np.uint8)).save(smaller)
    problems = validate_dataset(root, ["train"], dataset="cityscapes")
    assert sorted(type(p).__name__ for p in problems) == ["MissingFileError", "SizeMismatchError"]
    assert all("aachen_000000_00000" in p.path for p in problems)


def test_preflight_reads_stored_ids_through_the_map(cityscapes_root):
    root, _ = cityscapes_root
    examples = cityscapes.read_split(root, "train")
    assert preflight_check(examples, num_classes=19).num_examples == 3
    unmapped = [e._replace(label_map=None) for e in examples]  # ids up to 33 and 255
    with pytest.raises(Exception, match="class ids .* >= num_classes=19"):
        preflight_check(unmapped, num_classes=19)


def test_registry_tables_are_consistent():
    assert set(datasets.DATASETS) == {
        "voc", "cityscapes", "pascal_context", "pascal_context_60", "coco_stuff164k",
        "coco_stuff10k",
    }  # fmt: skip
    for dataset in datasets.DATASETS.values():
        assert len(dataset.palette) == dataset.num_classes == len(set(dataset.class_names))
        assert dataset.colormap().shape == (256, 3)
    assert datasets.get_dataset("voc").class_names == voc.VOC_CLASSES
    assert coco_stuff.DATASET_10K.num_classes == coco_stuff.DATASET_164K.num_classes == 171
    with pytest.raises(ValueError, match="--dataset 'kitti' is unknown"):
        datasets.get_dataset("kitti")


def test_examples_of_two_label_maps_are_refused(cityscapes_root, tmp_path):
    root, _ = cityscapes_root
    write_pascal_context(tmp_path, {"val": ["x"]})
    context = pascal_context.DATASET.read_split(str(tmp_path), "val")
    mixed = cityscapes.read_split(root, "val") + context
    with pytest.raises(ValueError, match="different label maps"):
        examples_dataset(mixed)


@pytest.mark.parametrize("name", ["cityscapes", "coco_stuff10k"])
def test_tfds_builder_gives_the_readers_examples(tmp_path, name):
    from ema_keras.data.tfds_builder import load_segmentation

    manual_dir = str(tmp_path / "manual")
    if name == "cityscapes":
        write_cityscapes(manual_dir, {"train": {"ulm": 2}, "val": {"lindau": 1}})
    else:
        write_coco_stuff_10k(manual_dir, {"train": 2, "test": 1})
    dataset = datasets.get_dataset(name)
    for split in dataset.splits:
        examples = dataset.read_split(manual_dir, split)
        if name == "coco_stuff10k":
            examples = convert_sbd_to_png(examples, tmp_path / "pngs", num_classes=171)
        expected = {
            e["image_id"]: (e["image"], e["label"])
            for e in examples_dataset(examples).as_numpy_iterator()
        }
        loaded = load_segmentation(
            name, split, data_dir=str(tmp_path / "tfds"), manual_dir=manual_dir
        )
        got = {e["image_id"]: (e["image"], e["label"]) for e in loaded.as_numpy_iterator()}
        assert sorted(got) == sorted(expected)
        for image_id, (image, label) in got.items():
            np.testing.assert_array_equal(image, expected[image_id][0])
            np.testing.assert_array_equal(label, expected[image_id][1])


def test_validator_cli_learns_the_dataset(cityscapes_root, capsys):
    from tests.cli_testing import run_program

    root, _ = cityscapes_root
    assert run_program("ema-keras-validate", "--dataset=cityscapes", f"--data_dir={root}") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        "train: 3 pairs, images 32x64, ids 0..18 (19 distinct), 255 (ignored)",
        "val: 1 pairs, images 32x64, ids 0..18 (19 distinct), 255 (ignored)",
    ]
    assert out[2].startswith("OK: ")
    images = os.path.join(root, "leftImg8bit", "val", "frankfurt")
    os.remove(os.path.join(images, "frankfurt_000000_000000_leftImg8bit.png"))
    assert run_program("ema-keras-validate", "--dataset=cityscapes", f"--data_dir={root}",
                       "--splits=val") == 1
    assert "EmptySplitError" in capsys.readouterr().out
    assert run_program("ema-keras-validate", "--dataset=kitti", f"--data_dir={root}") != 0
    error = capsys.readouterr().err
    assert "ema-keras-validate: --dataset 'kitti' is unknown" in error
    assert len(error.splitlines()) == 1


def test_palettes_colour_predictions_per_dataset():
    from ema_keras.visualize import colorize, overlay

    label = np.array([[0, 13, 18, 255]], np.uint8)
    np.testing.assert_array_equal(
        colorize(label, "cityscapes")[0], [(128, 64, 128), (0, 0, 142), (119, 11, 32), (0, 0, 0)]
    )
    np.testing.assert_array_equal(colorize(label), voc.voc_colormap()[label])  # VOC as before
    image = np.full((1, 4, 3), 100, np.uint8)
    assert (overlay(image, label)[0, 0] == 100).all()  # VOC's background stays clear
    assert overlay(image, label, dataset="cityscapes")[0, 0].tolist() == [114, 82, 114]  # road


def test_discovery_finds_each_dataset_in_its_usual_folder(tmp_path, cityscapes_root):
    from ema_keras.data.discovery import DataNotFoundError, find_data_root

    root, _ = cityscapes_root
    write_pascal_context(tmp_path / "data" / "VOCdevkit", {"val": ["a"]})
    assert find_data_root("cityscapes", root, environ={}) == (root, "--data_dir")
    assert find_data_root("pascal_context", environ={}, cwd=str(tmp_path)) == (
        str(tmp_path / "data" / "VOCdevkit" / "VOC2010"), "./data/VOCdevkit"
    )
    with pytest.raises(MissingFileError, match="--data_dir takes a cityscapes folder"):
        find_data_root("cityscapes", str(tmp_path / "data"), environ={})
    with pytest.raises(DataNotFoundError, match="no coco_stuff10k data found.*cocostuff-10k"):
        find_data_root("coco_stuff10k", environ={}, cwd=str(tmp_path), home=str(tmp_path))
