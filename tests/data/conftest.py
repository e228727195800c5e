"""Fixture writers: small datasets in the real on-disk formats, in tmp_path."""

import os

import numpy as np
import pytest
import scipy.io
from PIL import Image

from ema_keras.data.image_io import save_palette_png


def random_label(rng, height, width, num_classes=21, with_border=True):
    """Blocks of class ids with a 255 line, like a VOC mask."""
    label = rng.integers(0, num_classes, size=(height // 8 + 1, width // 8 + 1)).astype(np.uint8)
    label = np.kron(label, np.ones((8, 8), np.uint8))[:height, :width]
    if with_border:
        label[height // 2, :] = 255
    return label


def write_jpeg(path, image, quality=95):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=quality)


def write_voc(root, splits, *, size=(40, 48), seed=0, label_dir="SegmentationClass"):
    """A VOC2012 folder under `root` with `splits` = {name: [ids]}; returns (voc_root, labels)."""
    rng = np.random.default_rng(seed)
    voc_root = os.path.join(root, "VOC2012")
    os.makedirs(os.path.join(voc_root, "ImageSets", "Segmentation"), exist_ok=True)
    os.makedirs(os.path.join(voc_root, label_dir), exist_ok=True)
    labels = {}
    for ids in splits.values():
        for image_id in ids:
            if image_id in labels:
                continue
            height = size[0] + int(rng.integers(0, 8))
            width = size[1] + int(rng.integers(0, 8))
            image = rng.integers(0, 256, size=(height, width, 3)).astype(np.uint8)
            write_jpeg(os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg"), image)
            labels[image_id] = random_label(rng, height, width)
            save_palette_png(labels[image_id], os.path.join(voc_root, label_dir, f"{image_id}.png"))
    for name, ids in splits.items():
        with open(
            os.path.join(voc_root, "ImageSets", "Segmentation", f"{name}.txt"), "w"
        ) as handle:
            handle.write("".join(f"{i}\n" for i in ids))
    return voc_root, labels


def write_sbd(root, splits, *, size=(36, 44), seed=1):
    """benchmark_RELEASE/dataset with img/*.jpg, cls/*.mat (GTcls struct), {train,val}.txt."""
    rng = np.random.default_rng(seed)
    dataset = os.path.join(root, "benchmark_RELEASE", "dataset")
    os.makedirs(os.path.join(dataset, "cls"), exist_ok=True)
    labels = {}
    for name, ids in splits.items():
        for image_id in ids:
            if image_id not in labels:
                image = rng.integers(0, 256, size=size + (3,)).astype(np.uint8)
                write_jpeg(os.path.join(dataset, "img", f"{image_id}.jpg"), image)
                labels[image_id] = random_label(rng, *size)
                gtcls = {
                    "Segmentation": labels[image_id],
                    "CategoriesPresent": np.unique(labels[image_id]).astype(np.uint8),
                }
                scipy.io.savemat(os.path.join(dataset, "cls", f"{image_id}.mat"), {"GTcls": gtcls})
        with open(os.path.join(dataset, f"{name}.txt"), "w") as handle:
            handle.write("".join(f"{i}\n" for i in ids))
    return os.path.join(root, "benchmark_RELEASE"), labels


@pytest.fixture
def voc_fixture(tmp_path):
    voc_root, labels = write_voc(
        str(tmp_path),
        {
            "train": ["2007_000001", "2007_000002", "2007_000003"],
            "val": ["2007_000004", "2007_000005"],
        },
    )
    return voc_root, labels


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    from ema_keras.data.demo import write_demo_dataset

    return write_demo_dataset(
        str(tmp_path_factory.mktemp("demo")), num_train=8, num_val=4, image_size=(40, 56)
    )
