"""In-memory examples and Hugging Face datasets written as a folder dataset, then read back.

Every written folder is checked through `folder.read_folder` (and once through
`ema-keras-validate`), pixel for pixel against the arrays the test drew; every
refusal leaves neither the folder nor a temporary sibling behind.
"""

import io
import os
import sys

import datasets
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ema_keras.data import huggingface
from ema_keras.data.class_table import ClassTableError
from ema_keras.data.errors import DataError, LabelValueError, SizeMismatchError
from ema_keras.data.folder import read_folder
from ema_keras.data.folder_writer import write_folder_dataset
from ema_keras.data.huggingface import write_huggingface_dataset
from ema_keras.data.image_io import load_image
from tests.cli_testing import run_program

SIZE = (24, 32)
NAMES = ("background", "cat", "dog")
ID2LABEL = {"0": "background", "1": "cat", "2": "dog"}  # str keys, as config.json holds them


def draw(count, seed=0, size=SIZE):
    """`count` (image (H, W, 3) uint8, mask (H, W) uint8 of ids 0..2 and 255)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        mask = rng.integers(0, 3, size, dtype=np.uint8)
        mask[rng.random(size) < 0.1] = 255
        pairs.append((image, mask))
    return pairs


def jpeg_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def hf_split(pairs, image_column="image", label_column="label", jpeg=False):
    images = [{"bytes": jpeg_bytes(i), "path": None} if jpeg else Image.fromarray(i)
              for i, _ in pairs]
    return datasets.Dataset.from_dict(
        {image_column: images, label_column: [Image.fromarray(m) for _, m in pairs]},
        features=datasets.Features({column: datasets.Image()
                                    for column in (image_column, label_column)}),
    )


def read_back(root):
    """{image_id: (image pixels, mask ids, image path)} and the dataset, via the folder reader."""
    dataset = read_folder(root)
    found = {}
    for item in dataset.images:
        assert item.render is None  # 8-bit grayscale PNGs of ids: used as they are
        found[item.image_id] = (load_image(item.image), np.asarray(Image.open(item.mask_path)),
                                item.image)
    return dataset, found


def folder_splits(root):
    return dict(read_folder(root).splits)


def assert_nothing_left(parent, expected=()):
    assert sorted(os.listdir(parent)) == sorted(expected)


def test_dataset_dict_reads_back_pixel_for_pixel_and_validates(tmp_path, capsys):
    train, val = draw(4, seed=1), draw(2, seed=2)
    dataset = datasets.DatasetDict(
        {"train": hf_split(train), "validation": hf_split(val, jpeg=True)}
    )
    out = tmp_path / "out"
    written = write_huggingface_dataset(dataset, out, id2label=ID2LABEL)
    assert written.splits == {"train": 4, "val": 2} and written.num_images == 6
    folder, found = read_back(out)
    assert folder.class_table.names == NAMES and folder.class_table.num_classes == 3
    assert folder.splits == {"train": tuple(f"train/{i:06d}" for i in range(4)),
                             "val": ("val/000000", "val/000001")}
    for index, (image, mask) in enumerate(train):
        pixels, ids, _ = found[f"train/{index:06d}"]
        np.testing.assert_array_equal(pixels, image)
        np.testing.assert_array_equal(ids, mask)
    for index, (image, mask) in enumerate(val):  # JPEGs: kept byte for byte
        _, ids, path = found[f"val/{index:06d}"]
        assert path.endswith(".jpg")
        with open(path, "rb") as handle:
            assert handle.read() == dataset["validation"].cast_column(
                "image", datasets.Image(decode=False))[index]["image"]["bytes"]
        np.testing.assert_array_equal(ids, mask)
    assert_nothing_left(tmp_path, ["out"])

    assert run_program("ema-keras-validate", "--dataset=folder", f"--data_dir={out}") == 0
    printed = capsys.readouterr().out
    assert "train: 4 pairs" in printed and "val: 2 pairs" in printed and "3 classes" in printed
    dog_pixels = sum(int((m == 2).sum()) for _, m in train)
    assert f"| 2 | dog | {dog_pixels} |" in printed


def test_columns_are_found_by_name_or_given(tmp_path):
    pairs = draw(2)
    named = hf_split(pairs, image_column="pixel_values", label_column="annotation")
    write_huggingface_dataset(named, tmp_path / "named", class_names=NAMES)
    _, found = read_back(tmp_path / "named")
    assert folder_splits(tmp_path / "named") == {}  # a single Dataset ships no split
    np.testing.assert_array_equal(found["000001"][1], pairs[1][1])

    other = draw(2, seed=5)
    columns = {"image": [i for i, _ in pairs], "label": [m for _, m in pairs],
               "mask": [m for _, m in other]}
    three = datasets.Dataset.from_dict(
        {name: [Image.fromarray(a) for a in arrays] for name, arrays in columns.items()},
        features=datasets.Features({name: datasets.Image() for name in columns}),
    )
    with pytest.raises(DataError) as refused:
        write_huggingface_dataset(three, tmp_path / "ambiguous", id2label=ID2LABEL)
    message = str(refused.value)
    assert "label, mask could" in message and "label_column=" in message and "\n" not in message
    assert_nothing_left(tmp_path, ["named"])
    write_huggingface_dataset(three, tmp_path / "given", label_column="mask", id2label=ID2LABEL)
    _, found = read_back(tmp_path / "given")
    np.testing.assert_array_equal(found["000000"][1], other[0][1])
    np.testing.assert_array_equal(found["000000"][0], pairs[0][0])


def test_class_names_from_id2label_are_checked(tmp_path):
    split = hf_split(draw(1))
    with pytest.raises(DataError, match=r"no name for id\(s\) \[1\]"):
        write_huggingface_dataset(split, tmp_path / "a", id2label={0: "bg", 2: "dog"})
    with pytest.raises(DataError, match="pass id2label="):
        write_huggingface_dataset(split, tmp_path / "b")
    assert_nothing_left(tmp_path)
    # 255 is the ignore id: it takes no class
    write_huggingface_dataset(split, tmp_path / "c", id2label={**ID2LABEL, 255: "unlabeled"})
    assert read_folder(tmp_path / "c").class_table.names == NAMES


def test_missing_datasets_package_gives_the_install_hint(tmp_path, monkeypatch):
    assert "datasets" not in vars(huggingface)  # imported when the function runs, not before
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError) as refused:
        write_huggingface_dataset(object(), tmp_path / "out", id2label=ID2LABEL)
    assert "pip install 'ema-keras[huggingface]'" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert_nothing_left(tmp_path)


def test_generator_with_ids_pil_images_and_masks_of_other_dtypes(tmp_path):
    pairs = draw(3, seed=3)

    def examples():
        for index, (image, mask) in enumerate(pairs):
            # ids with an image extension and a folder; a PIL image; (H, W, 1) int64 ids
            ids = mask[..., None].astype(np.int64)
            yield f"day{index % 2}/shot{index}.jpg", Image.fromarray(image), ids

    out = tmp_path / "empty"
    out.mkdir()  # an empty folder is written into
    written = write_folder_dataset(examples(), out, list(NAMES))
    assert written.splits == {} and written.num_images == 3
    folder, found = read_back(out)
    assert sorted(found) == ["day0/shot0", "day0/shot2", "day1/shot1"] and folder.splits == {}
    for index, (image, mask) in enumerate(pairs):
        pixels, ids, _ = found[f"day{index % 2}/shot{index}"]
        np.testing.assert_array_equal(pixels, image)
        np.testing.assert_array_equal(ids, mask)


def test_tf_data_splits(tmp_path):
    pairs = draw(5, seed=4)
    source = tf.data.Dataset.from_tensor_slices(
        (np.stack([i for i, _ in pairs]), np.stack([m for _, m in pairs]))
    )
    splits = {"train": source.take(3), "val": source.skip(3)}
    written = write_folder_dataset(splits, tmp_path / "tf", NAMES)
    assert written.splits == {"train": 3, "val": 2}
    folder, found = read_back(tmp_path / "tf")
    assert folder.splits["val"] == ("val/000000", "val/000001")
    np.testing.assert_array_equal(found["val/000001"][0], pairs[4][0])
    np.testing.assert_array_equal(found["val/000001"][1], pairs[4][1])
    np.testing.assert_array_equal(found["train/000002"][1], pairs[2][1])

    named = tf.data.Dataset.from_tensor_slices(([b"x/a", b"x/b"], [pairs[0][0], pairs[1][0]],
                                                [pairs[0][1], pairs[1][1]]))
    write_folder_dataset(named, tmp_path / "named", NAMES)
    _, found = read_back(tmp_path / "named")
    assert sorted(found) == ["x/a", "x/b"]
    np.testing.assert_array_equal(found["x/b"][1], pairs[1][1])


def _spoiled(index, edit):
    pairs = draw(4, seed=6)
    for i, (image, mask) in enumerate(pairs):
        yield (image, edit(mask)) if i == index else (image, mask)


def test_mask_of_another_size_is_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(SizeMismatchError) as refused:
        write_folder_dataset(_spoiled(2, lambda m: m[:, :30]), tmp_path / "out", NAMES)
    assert str(refused.value) == "example 2: mask is 24x30 (HxW) but the image is 24x32"
    assert_nothing_left(tmp_path)


def test_id_beyond_the_classes_is_refused(tmp_path):
    def with_a_3(mask):
        mask = mask.copy()
        mask[5, 7] = 3
        return mask

    with pytest.raises(LabelValueError) as refused:
        write_folder_dataset({"train": list(_spoiled(1, with_a_3)), "val": draw(1)},
                             tmp_path / "out", NAMES)
    message = str(refused.value)
    assert message.startswith("example 1 of 'train': mask value(s) [3] are no class")
    assert "0..2 (3 classes), 255 = ignore" in message
    assert_nothing_left(tmp_path)


def test_non_empty_out_dir_is_refused_and_unchanged(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DataError) as refused:
        write_folder_dataset(draw(2), out, NAMES)
    assert str(out) in str(refused.value) and "not empty" in str(refused.value)
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    assert_nothing_left(tmp_path, ["mine"])


@pytest.mark.parametrize("name", ["road 128,64,128", "defect =255", "a#b", "__ignore__", " cat"])
def test_class_names_that_classes_txt_would_misread_are_refused(tmp_path, name):
    with pytest.raises(ClassTableError, match="class 1 "):
        write_folder_dataset(draw(1), tmp_path / "out", ["background", name])
    assert_nothing_left(tmp_path)


def test_bad_ids_and_examples_are_refused(tmp_path):
    image, mask = draw(1)[0]
    with pytest.raises(DataError, match=r"example 1 \('A'\): id 'A' is the id of example 0"):
        write_folder_dataset([("a", image, mask), ("A.png", image, mask)], tmp_path / "o", NAMES)
    with pytest.raises(DataError, match="no relative path"):
        write_folder_dataset([("../up", image, mask)], tmp_path / "o", NAMES)
    with pytest.raises(DataError, match="write_huggingface_dataset"):
        write_folder_dataset([{"image": image, "label": mask}], tmp_path / "o", NAMES)
    with pytest.raises(DataError, match="fractional"):
        write_folder_dataset([(image, mask / 2)], tmp_path / "o", NAMES)
    with pytest.raises(DataError, match="JPEG mask"):
        write_folder_dataset([(image, jpeg_bytes(np.stack([mask] * 3, -1)))], tmp_path / "o",
                             NAMES)
    assert_nothing_left(tmp_path)
