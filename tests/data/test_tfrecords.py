"""TFRecords and the TFDS builder give the same examples as the folder reader."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from ema_keras.data import decode, image_io, pipeline, tfrecords, voc
from tests.data.conftest import write_sbd, write_voc


def _by_id(dataset):
    return {item["image_id"].decode(): item for item in dataset.as_numpy_iterator()}


def _assert_same_examples(expected, actual):
    assert sorted(expected) == sorted(actual)
    for image_id, item in expected.items():
        np.testing.assert_array_equal(actual[image_id]["image"], item["image"])
        np.testing.assert_array_equal(actual[image_id]["label"], item["label"])


def test_tfrecord_round_trip_equals_folder_reader(voc_fixture, tmp_path):
    voc_root, _ = voc_fixture
    examples = voc.read_voc_split(voc_root, "train") + voc.read_voc_split(voc_root, "val")
    paths = tfrecords.write_tfrecords(examples, tmp_path / "records", num_shards=2)
    assert [os.path.basename(p) for p in paths] == [
        "voc-00000-of-00002.tfrecord",
        "voc-00001-of-00002.tfrecord",
    ]
    from_records = list(
        tfrecords.read_tfrecords(str(tmp_path / "records" / "voc-*.tfrecord")).as_numpy_iterator()
    )
    from_folder = list(decode.examples_dataset(examples).as_numpy_iterator())
    assert [r["image_id"] for r in from_records] == [
        f["image_id"] for f in from_folder
    ]  # same order
    _assert_same_examples(
        {f["image_id"].decode(): f for f in from_folder},
        {r["image_id"].decode(): r for r in from_records},
    )


def test_tfrecords_carry_sbd_mat_labels(tmp_path):
    sbd_root, labels = write_sbd(str(tmp_path), {"train": ["m1", "m2", "m3"]})
    examples = voc.read_sbd_split(sbd_root, "train")
    tfrecords.write_tfrecords(examples, tmp_path / "sbd", num_shards=3, prefix="sbd")
    records = _by_id(tfrecords.read_tfrecords(str(tmp_path / "sbd" / "sbd-*")))
    for example in examples:
        np.testing.assert_array_equal(records[example.image_id]["label"], labels[example.image_id])
        np.testing.assert_array_equal(
            records[example.image_id]["image"], image_io.load_image(example.image_path)
        )


def test_train_dataset_from_tfrecords_shards_by_file(voc_fixture, tmp_path):
    voc_root, _ = voc_fixture
    examples = voc.read_voc_split(voc_root, "train")
    tfrecords.write_tfrecords(
        examples + voc.read_voc_split(voc_root, "val"), tmp_path, num_shards=4
    )
    pattern = str(tmp_path / "voc-*.tfrecord")
    dataset = pipeline.train_dataset(pattern, batch_size=2, crop_size=24, seed=0, num_classes=21)
    images, labels = next(iter(dataset))
    assert images.shape == (2, 24, 24, 3) and labels.shape == (2, 24, 24)
    ids = []
    for index in range(2):
        context = tf.distribute.InputContext(2, index, 2)
        dataset = pipeline.eval_dataset(
            pattern, batch_size=2, input_context=context, with_metadata=True, num_classes=21
        )
        ids.append({m["image_id"][0].decode() for _, _, m in dataset.as_numpy_iterator()})
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 5


def test_write_tfrecords_argument_errors(voc_fixture, tmp_path):
    examples = voc.read_voc_split(voc_fixture[0], "val")
    with pytest.raises(ValueError, match="num_shards"):
        tfrecords.write_tfrecords(examples, tmp_path, num_shards=3)
    with pytest.raises(FileNotFoundError, match="nothing-"):
        tfrecords.read_tfrecords(str(tmp_path / "nothing-*"))


def test_tfds_builder_from_manual_dir_gives_the_same_examples(tmp_path):
    import tensorflow_datasets as tfds

    from ema_keras.data import tfds_builder

    manual_dir = tmp_path / "manual"
    voc_root, _ = write_voc(
        str(manual_dir / "VOCdevkit"),
        {"train": ["t1", "t2"], "val": ["v1"], "trainval": ["t1", "t2", "v1"]},
    )
    sbd_root, _ = write_sbd(str(manual_dir), {"train": ["s1", "v1"], "val": ["s2"]})
    for image_id in ("s1", "s2"):  # VOC 2012 holds the SBD images too
        shutil.copy(
            os.path.join(sbd_root, "dataset", "img", f"{image_id}.jpg"),
            os.path.join(voc_root, "JPEGImages"),
        )

    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    builder = tfds.builder("voc_segmentation", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=config)
    assert set(builder.info.splits) == {"train", "val", "trainval", "trainaug"}
    assert builder.info.splits["trainaug"].num_examples == 4

    for split, examples in (
        ("train", voc.read_voc_split(voc_root, "train")),
        ("trainaug", voc.trainaug_examples(voc_root, sbd_root=sbd_root)),
    ):
        expected = {  # numpy readers: the SBD .mat labels have no graph decoder
            e.image_id: {
                "image": image_io.load_image(e.image_path),
                "label": image_io.load_label(e.label_path),
            }
            for e in examples
        }
        exact = _by_id(tfds_builder.load_voc_segmentation(split, data_dir=str(tmp_path / "tfds")))
        _assert_same_examples(expected, exact)
        # Plain tfds.load: labels exact (as (H, W, 1)), JPEGs within TFDS's fast IDCT error.
        plain = _by_id(tfds.load("voc_segmentation", split=split, data_dir=str(tmp_path / "tfds")))
        for image_id, item in expected.items():
            np.testing.assert_array_equal(plain[image_id]["label"][..., 0], item["label"])
            difference = np.abs(plain[image_id]["image"].astype(int) - item["image"])
            assert difference.max() <= 16 and difference.mean() < 2

    batches = pipeline.train_dataset(
        tfds.load("voc_segmentation", split="trainaug", data_dir=str(tmp_path / "tfds")),
        batch_size=2,
        crop_size=16,
        seed=0, num_classes=21,
    )
    assert next(iter(batches))[1].shape == (2, 16, 16)
