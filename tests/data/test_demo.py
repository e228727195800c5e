"""The embedded demo dataset: real formats, deterministic, idempotent, learnable."""

import filecmp
import os

import numpy as np
from PIL import Image

from ema_keras.data import demo, image_io, validate, voc


def test_layout_and_formats(demo_root):
    assert os.path.basename(demo_root) == "VOC2012"
    train = voc.read_voc_split(demo_root, "train")
    val = voc.read_voc_split(demo_root, "val")
    trainval = voc.read_voc_split(demo_root, "trainval")
    assert len(train) == 8 and len(val) == 4 and trainval == train + val
    assert not {e.image_id for e in train} & {e.image_id for e in val}
    classes, sizes = set(), set()
    for example in trainval:
        with Image.open(example.image_path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            sizes.add(image.size)
            assert all(40 <= side <= 56 for side in image.size)
        with Image.open(example.label_path) as label_image:
            assert label_image.format == "PNG" and label_image.mode == "P"
            palette = np.asarray(label_image.getpalette(), np.uint8).reshape(-1, 3)
            np.testing.assert_array_equal(palette[:256], voc.voc_colormap())
        label = image_io.load_label(example.label_path)
        classes |= set(np.unique(label).tolist())
        assert 255 in label  # object outlines are ignored, as in VOC
    assert len(sizes) > 1
    assert classes <= {0, 255, *demo.DEMO_CLASS_IDS} and len(classes - {0, 255}) >= 3
    assert validate.validate_dataset(demo_root, splits=("train", "val", "trainval")) == []


def test_deterministic_and_idempotent(tmp_path):
    first = demo.write_demo_dataset(tmp_path / "a", num_train=3, num_val=2, image_size=48, seed=7)
    second = demo.write_demo_dataset(tmp_path / "b", num_train=3, num_val=2, image_size=48, seed=7)
    names = sorted(
        os.path.relpath(os.path.join(folder, name), first)
        for folder, _, files in os.walk(first)
        for name in files
    )
    assert len(names) == 2 * 5 + 3 + 1  # images, labels, split files, manifest
    match, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
    assert not mismatch and not errors

    label_path = os.path.join(first, "SegmentationClass", "demo_00000.png")
    before = os.stat(label_path).st_mtime_ns
    assert (
        demo.write_demo_dataset(tmp_path / "a", num_train=3, num_val=2, image_size=48, seed=7)
        == first
    )
    assert os.stat(label_path).st_mtime_ns == before  # a complete folder is not rewritten
    os.remove(label_path)  # an incomplete one is
    demo.write_demo_dataset(tmp_path / "a", num_train=3, num_val=2, image_size=48, seed=7)
    assert filecmp.cmp(
        label_path, os.path.join(second, "SegmentationClass", "demo_00000.png"), shallow=False
    )

    other = demo.write_demo_dataset(tmp_path / "c", num_train=3, num_val=2, image_size=48, seed=8)
    assert not filecmp.cmp(
        os.path.join(other, "SegmentationClass", "demo_00000.png"), label_path, shallow=False
    )


def test_classes_are_separable_by_colour(demo_root):
    # A nearest-mean colour classifier fitted on train pixels already labels
    # most val pixels right: a CNN has an easy, but not trivial, task.
    def pixels(split):
        colours, labels = [], []
        for example in voc.read_voc_split(demo_root, split):
            label = image_io.load_label(example.label_path)
            keep = label != 255
            colours.append(image_io.load_image(example.image_path)[keep].astype(np.float64))
            labels.append(label[keep])
        return np.concatenate(colours), np.concatenate(labels)

    train_colours, train_labels = pixels("train")
    classes = np.unique(train_labels)
    means = np.stack([train_colours[train_labels == c].mean(axis=0) for c in classes])
    val_colours, val_labels = pixels("val")
    predicted = classes[np.argmin(((val_colours[:, None] - means[None]) ** 2).sum(-1), axis=1)]
    objects = val_labels != 0
    assert (predicted == val_labels).mean() > 0.6
    assert (predicted[objects] == val_labels[objects]).mean() > 0.5
