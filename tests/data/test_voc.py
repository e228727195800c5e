import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ema_keras.data import image_io, voc
from ema_keras.data.errors import EmptySplitError, MissingFileError
from tests.data.conftest import write_sbd, write_voc


def test_colormap_known_entries_and_bijective():
    colormap = voc.voc_colormap()
    assert colormap.shape == (256, 3) and colormap.dtype == np.uint8
    assert colormap[1].tolist() == [128, 0, 0]  # aeroplane
    assert colormap[15].tolist() == [192, 128, 128]  # person
    assert colormap[20].tolist() == [0, 64, 128]  # tvmonitor
    assert colormap[255].tolist() == [224, 224, 192]  # border
    assert len({tuple(c) for c in colormap.tolist()}) == 256
    assert len(voc.VOC_CLASSES) == 21 and voc.VOC_CLASSES[15] == "person"


def test_voc_split_round_trip_keeps_ids_and_255(voc_fixture):
    voc_root, labels = voc_fixture
    examples = voc.read_voc_split(os.path.dirname(voc_root), "train")  # the parent folder works too
    assert [e.image_id for e in examples] == ["2007_000001", "2007_000002", "2007_000003"]
    for example in examples:
        assert Image.open(example.label_path).mode == "P"
        label = image_io.load_label(example.label_path, num_classes=21)
        np.testing.assert_array_equal(label, labels[example.image_id])
        assert 255 in label
        assert image_io.load_image(example.image_path).shape == label.shape + (3,)


def test_sbd_mat_round_trip(tmp_path):
    sbd_root, labels = write_sbd(str(tmp_path), {"train": ["a1", "a2"], "val": ["a3"]})
    examples = voc.read_sbd_split(sbd_root, "train")
    assert [e.image_id for e in examples] == ["a1", "a2"]
    assert examples[0].label_path.endswith(os.path.join("cls", "a1.mat"))
    for example in examples + voc.read_sbd_split(sbd_root, "val"):
        np.testing.assert_array_equal(
            image_io.load_label(example.label_path), labels[example.image_id]
        )


def test_segmentation_class_aug_round_trip(tmp_path):
    voc_root, labels = write_voc(
        str(tmp_path), {"train": ["x1", "x2"], "val": ["x3"]}, label_dir="SegmentationClassAug"
    )
    # SegmentationClassAug holds single-channel PNGs of ids, not palette PNGs.
    aug_dir = os.path.join(voc_root, "SegmentationClassAug")
    for image_id, label in labels.items():
        with open(os.path.join(aug_dir, f"{image_id}.png"), "wb") as handle:
            handle.write(image_io.encode_label_png(label))
    list_path = tmp_path / "train_aug.txt"
    list_path.write_text(
        "/JPEGImages/x1.jpg /SegmentationClassAug/x1.png\n"
        "/JPEGImages/x3.jpg /SegmentationClassAug/x3.png\n"
    )
    examples = voc.read_aug_split(voc_root, list_path)
    assert [e.image_id for e in examples] == ["x1", "x3"]
    for example in examples:
        assert Image.open(example.label_path).mode == "L"
        np.testing.assert_array_equal(
            image_io.load_label(example.label_path), labels[example.image_id]
        )


def _overlapping_fixture(tmp_path):
    voc_root, voc_labels = write_voc(
        str(tmp_path),
        {
            "train": ["t1", "t2", "s1"],
            "val": ["v1", "v2"],
            "trainval": ["t1", "t2", "s1", "v1", "v2"],
        },
    )
    # SBD train overlaps VOC train (s1) and VOC val (v1); SBD val overlaps VOC val (v2).
    sbd_root, sbd_labels = write_sbd(
        str(tmp_path), {"train": ["s1", "s2", "v1"], "val": ["s3", "v2", "s2"]}
    )
    return voc_root, voc_labels, sbd_root, sbd_labels


def test_trainaug_merge_with_overlaps(tmp_path):
    voc_root, voc_labels, sbd_root, sbd_labels = _overlapping_fixture(tmp_path)
    examples = voc.trainaug_examples(voc_root, sbd_root=sbd_root)
    assert [e.image_id for e in examples] == ["s1", "s2", "s3", "t1", "t2"]
    by_id = {e.image_id: e for e in examples}
    # VOC's own mask wins for ids in VOC train; SBD .mat otherwise.
    assert by_id["s1"].label_path.endswith(os.path.join("SegmentationClass", "s1.png"))
    assert by_id["s2"].label_path.endswith(os.path.join("cls", "s2.mat"))
    np.testing.assert_array_equal(image_io.load_label(by_id["s1"].label_path), voc_labels["s1"])
    np.testing.assert_array_equal(image_io.load_label(by_id["s3"].label_path), sbd_labels["s3"])


def test_trainaug_from_aug_folder(tmp_path):
    voc_root, voc_labels, sbd_root, sbd_labels = _overlapping_fixture(tmp_path)
    aug_dir = tmp_path / "SegmentationClassAug"
    aug_dir.mkdir()
    for image_id in sbd_labels:  # VOC 2012's JPEGImages holds every SBD image
        source = os.path.join(sbd_root, "dataset", "img", f"{image_id}.jpg")
        target = os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg")
        if not os.path.exists(target):
            shutil.copy(source, target)
    for image_id, label in {
        **sbd_labels,
        **{"v1": voc_labels["v1"], "t1": voc_labels["t1"]},
    }.items():
        (aug_dir / f"{image_id}.png").write_bytes(image_io.encode_label_png(label))
    examples = voc.trainaug_examples(voc_root, aug_dir=aug_dir)
    assert [e.image_id for e in examples] == ["s1", "s2", "s3", "t1", "t2"]
    by_id = {e.image_id: e for e in examples}
    assert by_id["s3"].label_path == str(aug_dir / "s3.png")
    assert by_id["s3"].image_path.endswith(os.path.join("JPEGImages", "s3.jpg"))


def test_trainaug_needs_sbd(voc_fixture):
    with pytest.raises(ValueError, match="sbd_root"):
        voc.trainaug_examples(voc_fixture[0])


def test_missing_split_file_names_it(voc_fixture):
    with pytest.raises(MissingFileError, match=r"test\.txt"):
        voc.read_voc_split(voc_fixture[0], "test")


def test_empty_split_names_it(voc_fixture):
    path = os.path.join(voc_fixture[0], "ImageSets", "Segmentation", "empty.txt")
    with open(path, "w") as handle:
        handle.write("\n\n")
    with pytest.raises(EmptySplitError, match=r"empty\.txt"):
        voc.read_voc_split(voc_fixture[0], "empty")


def test_split_naming_missing_id_names_split_and_file(voc_fixture):
    voc_root = voc_fixture[0]
    with open(os.path.join(voc_root, "ImageSets", "Segmentation", "train.txt"), "a") as handle:
        handle.write("2099_999999\n")
    with pytest.raises(MissingFileError, match=r"train\.txt.*2099_999999\.jpg") as error:
        voc.read_voc_split(voc_root, "train")
    assert error.value.path.endswith("train.txt")
    assert len(voc.read_voc_split(voc_root, "train", check_files=False)) == 4


def test_no_voc_folder(tmp_path):
    with pytest.raises(MissingFileError, match="ImageSets"):
        voc.read_voc_split(tmp_path, "train")
