"""In-graph decoding agrees with the numpy readers, and names the file when it cannot."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ema_keras.data import decode, image_io, voc
from tests.data.conftest import write_jpeg


def _png_bytes(array, mode=None):
    buffer = io.BytesIO()
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _decode_label(encoded, path="label.png"):
    return decode.decode_label(tf.constant(encoded), tf.constant(path)).numpy()


def test_palette_png_every_id_including_255(tmp_path):
    label = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "all_ids.png"
    image_io.save_palette_png(label, path)
    np.testing.assert_array_equal(_decode_label(path.read_bytes()), label)
    np.testing.assert_array_equal(image_io.load_label(path), label)


def test_grayscale_png_holds_ids_directly():
    label = np.array([[0, 5, 20], [255, 3, 7]], dtype=np.uint8)
    np.testing.assert_array_equal(_decode_label(_png_bytes(label)), label)


def test_voc_coloured_rgb_png_is_mapped_back(tmp_path):
    label = np.array([[0, 1, 15], [255, 20, 7]], dtype=np.uint8)
    rgb = voc.voc_colormap()[label]
    path = tmp_path / "rgb.png"
    path.write_bytes(_png_bytes(rgb))
    np.testing.assert_array_equal(_decode_label(path.read_bytes()), label)
    np.testing.assert_array_equal(image_io.load_label(path), label)


def test_colour_outside_the_map_names_the_file():
    rgb = np.full((2, 2, 3), 7, dtype=np.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="odd_colours.png"):
        _decode_label(_png_bytes(rgb), "odd_colours.png")


def test_16_bit_label_names_the_file():
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 3, dtype=np.uint16)).save(buffer, format="PNG")
    with pytest.raises(tf.errors.InvalidArgumentError, match="deep.png"):
        _decode_label(buffer.getvalue(), "deep.png")


def test_non_png_label_names_the_file():
    with pytest.raises(tf.errors.InvalidArgumentError, match="not_a_png.png"):
        _decode_label(b"GIF89a...", "not_a_png.png")


def test_jpeg_pixels_equal_pillow(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "noise.jpg")
    write_jpeg(path, rng.integers(0, 256, size=(33, 47, 3)).astype(np.uint8), quality=80)
    decoded = decode.decode_image(tf.io.read_file(path), tf.constant(path)).numpy()
    np.testing.assert_array_equal(decoded, image_io.load_image(path))


def test_grayscale_and_cmyk_jpegs_are_converted_to_rgb(tmp_path):
    gray = np.tile(np.arange(0, 240, 8, dtype=np.uint8), (16, 1))
    gray_path = str(tmp_path / "gray.jpg")
    Image.fromarray(gray).save(gray_path, quality=95)
    decoded = decode.decode_image(tf.io.read_file(gray_path), tf.constant(gray_path)).numpy()
    assert decoded.shape == gray.shape + (3,)
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    np.testing.assert_array_equal(decoded, image_io.load_image(gray_path))

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8] = (200, 30, 40)
    rgb[8:] = (20, 180, 90)
    cmyk_path = str(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("CMYK").save(cmyk_path, quality=100)
    decoded = decode.decode_image(tf.io.read_file(cmyk_path), tf.constant(cmyk_path)).numpy()
    np.testing.assert_array_equal(decoded, image_io.load_image(cmyk_path))
    assert np.abs(decoded.astype(int) - rgb).max() <= 3


def test_not_an_image_names_the_file():
    with pytest.raises(tf.errors.InvalidArgumentError, match="notes.jpg"):
        decode.decode_image(tf.constant(b"hello world"), tf.constant("notes.jpg"))


def test_examples_dataset_equals_numpy_readers(voc_fixture):
    voc_root, labels = voc_fixture
    examples = voc.read_voc_split(voc_root, "val")
    decoded = list(decode.examples_dataset(examples).as_numpy_iterator())
    assert [d["image_id"].decode() for d in decoded] == [e.image_id for e in examples]
    for item, example in zip(decoded, examples):
        np.testing.assert_array_equal(item["label"], labels[example.image_id])
        np.testing.assert_array_equal(item["image"], image_io.load_image(example.image_path))


def test_size_mismatch_in_graph_names_the_label(voc_fixture):
    voc_root, labels = voc_fixture
    example = voc.read_voc_split(voc_root, "val")[0]
    image_io.save_palette_png(labels[example.image_id][:-3], example.label_path)
    with pytest.raises(tf.errors.InvalidArgumentError, match=os.path.basename(example.label_path)):
        list(decode.examples_dataset([example]))


def test_mat_labels_are_refused_by_the_graph_reader_with_the_file():
    example = voc.VOCExample("a", "/x/img/a.jpg", "/x/cls/a.mat")
    with pytest.raises(ValueError, match=r"/x/cls/a\.mat.*write_tfrecords"):
        decode.examples_dataset([example])
