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


def png_16bit_rgb(height, width, seed=0):
    """A 48-bit RGB PNG, written by hand: Pillow opens it as 8-bit RGB without a word."""
    import struct
    import zlib

    pixels = np.random.default_rng(seed).integers(0, 65536, size=(height, width, 3))
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind, data):
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _cut(path, keep):
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:keep(len(data))])


def _resave(path, convert, **options):
    image = Image.open(path)
    image.load()
    convert(image).save(path, **options)


def _edit_label(path, edit):
    label = np.asarray(Image.open(path)).copy()
    save_palette_png(edit(label), path)


def _foreign_palette(path):
    image = Image.open(path)
    palette = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)
    image.putpalette(palette[::-1].tobytes())  # indices unchanged, colours not VOC's
    image.save(path)


def _write_bytes(path, data):
    with open(path, "wb") as handle:
        handle.write(data)


def _rgb_with_an_unknown_colour(path):
    from ema_keras.data.voc import voc_colormap

    rgb = voc_colormap()[np.asarray(Image.open(path))]
    rgb[0, 0] = (7, 7, 7)
    Image.fromarray(rgb).save(path)


def _with_30_in_the_corner(label):
    label[-1, -1] = 30
    return label


# kind -> (which file it spoils, how). Each leaves the other file of the example intact.
BAD_FILES = {
    "truncated_jpeg": ("image", lambda path: _cut(path, lambda n: n // 2)),
    "jpeg_cut_after_header": ("image", lambda path: _cut(path, lambda n: 300)),
    "truncated_png_label": ("label", lambda path: _cut(path, lambda n: n // 2)),
    "png_label_without_iend": ("label", lambda path: _cut(path, lambda n: n - 12)),
    "rgba_png_named_jpg": (
        "image", lambda path: _resave(path, lambda i: i.convert("RGBA"), format="PNG")
    ),
    "palette_png_image": (
        "image", lambda path: _resave(path, lambda i: i.convert("P"), format="PNG")
    ),
    "16_bit_png_image": (
        "image", lambda path: _write_bytes(path, png_16bit_rgb(*Image.open(path).size[::-1]))
    ),
    "not_an_image": ("image", lambda path: _write_bytes(path, b"not a jpeg at all")),
    "label_value_30_in_a_corner": ("label", lambda path: _edit_label(path, _with_30_in_the_corner)),
    "size_mismatch": ("label", lambda path: _edit_label(path, lambda label: label[:, :-3])),
    "foreign_palette": ("label", _foreign_palette),
    "rgb_label_with_an_unknown_colour": ("label", _rgb_with_an_unknown_colour),
    "missing_label": ("label", os.remove),
}


def spoil(voc_root, image_id, kind):
    """Makes one file of `image_id` bad in the way `kind` says; returns that file's path."""
    which, spoil_file = BAD_FILES[kind]
    folder, extension = ("JPEGImages", "jpg") if which == "image" else ("SegmentationClass", "png")
    path = os.path.join(voc_root, folder, f"{image_id}.{extension}")
    spoil_file(path)
    return path
