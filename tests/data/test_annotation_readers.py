"""CVAT, LabelMe and COCO readers against independent expectations: numpy geometry, pycocotools.

The fixtures paint each class in its own colour, so an image says what its
mask must be (the nearest fixture colour of each pixel); shapes drawn by PIL
are checked with numpy geometry, COCO decoding with pycocotools.
"""

import io
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from ema_keras.data.class_table import ClassTableError
from ema_keras.data.coco_instances import (
    decode_rle,
    polygon_mask,
    read_coco_instances,
    read_coco_layout,
)
from ema_keras.data.cvat import read_cvat
from ema_keras.data.errors import (
    DataError,
    EmptySplitError,
    LabelValueError,
    MissingFileError,
    SizeMismatchError,
)
from ema_keras.data.labelme import read_labelme
from tests.data.annotation_fixtures import (
    CLASS_NAMES,
    CVAT_COLOURS,
    PIXEL_COLOURS,
    rle_runs,
    rle_string,
    write_coco_instances,
    write_cvat_export,
    write_labelme_folder,
)

SIZE = (48, 64)


def pixels(image):
    source = io.BytesIO(image) if isinstance(image, bytes) else image
    return np.asarray(Image.open(source).convert("RGB"))


def ids_by_colour(image):
    """Each pixel's nearest fixture colour: what the image shows, independent of any reader."""
    colours = np.asarray([PIXEL_COLOURS[i] for i in range(3)], float)
    distance = ((pixels(image)[..., None, :].astype(float) - colours) ** 2).sum(-1)
    return distance.argmin(-1)


def assert_masks_show_the_images(dataset, min_agreement):
    for item in dataset.images:
        ids = item.render(SIZE)
        assert ids.shape == SIZE and ids.dtype == np.uint8
        agreement = (ids == ids_by_colour(item.image)).mean()
        assert agreement >= min_agreement, (item.image_id, agreement)


# CVAT


def test_cvat_folder_and_zip_read_alike_and_match_the_images(tmp_path):
    folder = read_cvat(write_cvat_export(tmp_path / "folder"))
    archive_path = write_cvat_export(tmp_path / "zip", zip=True)
    archive = read_cvat(archive_path)
    assert folder.class_table.names == CLASS_NAMES and folder.class_table.colours == CVAT_COLOURS
    assert folder.splits == {} and folder.left_out == () and len(folder.images) == 8
    assert folder.images[0].converter == "cvat-1"
    assert folder.images[0].sources[1].endswith("labelmap.txt")
    assert all(item.sources == (archive_path,) for item in archive.images)
    assert all(isinstance(item.image, bytes) for item in archive.images)
    for a, b in zip(folder.images, archive.images):
        assert a.image_id == b.image_id
        np.testing.assert_array_equal(a.render(SIZE), b.render(SIZE))
        np.testing.assert_array_equal(pixels(a.image), pixels(b.image))
    # The masks are exact; JPEG blurs colour at the shapes' edges (chroma subsampling).
    assert_masks_show_the_images(folder, 0.98)


def test_cvat_subsets_are_splits_and_unusable_stems_are_left_out(tmp_path):
    root = write_cvat_export(tmp_path, subsets=("train", "val"))
    os.remove(os.path.join(root, "SegmentationClass", "frame_000002.png"))
    with open(os.path.join(root, "ImageSets", "Segmentation", "val.txt"), "w") as handle:
        handle.write("frame_000001\nframe_000003\nframe_000005\n")  # drops frame_000007
    dataset = read_cvat(root)
    assert dataset.splits == {
        "train": ("frame_000000", "frame_000004", "frame_000006"),
        "val": ("frame_000001", "frame_000003", "frame_000005"),
    }
    assert [(os.path.basename(path), why) for path, why in dataset.left_out] == [
        ("frame_000002.png", "listed in ImageSets/Segmentation/ but has no mask"),
        ("frame_000007.png", "mask of no image listed in ImageSets/Segmentation/*.txt"),
    ]
    with open(os.path.join(root, "ImageSets", "Segmentation", "val.txt"), "w") as handle:
        handle.write("frame_000002\n")
    with pytest.raises(EmptySplitError, match=r"val.txt: lists no image with a mask"):
        read_cvat(root)


def test_cvat_refuses_unknown_colours_a_missing_background_and_exports_without_images(tmp_path):
    root = write_cvat_export(tmp_path, num_images=2)
    mask_path = os.path.join(root, "SegmentationClass", "frame_000001.png")
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[0, 0] = (1, 2, 3)
    Image.fromarray(mask).save(mask_path)
    dataset = read_cvat(root)  # reading lists; the mask is decoded when rendered
    with pytest.raises(LabelValueError, match=r"frame_000001.png: .*\(1, 2, 3\)"):
        dataset.images[1].render(SIZE)
    labelmap = os.path.join(root, "labelmap.txt")
    with open(labelmap, "w") as handle:
        handle.write("# label:color_rgb:parts:actions\nbox:250,50,83::\ntriangle:51,221,255::\n")
    with pytest.raises(LabelValueError, match=r"frame_000000.png: .*\(0, 0, 0\).*background:0,0,0"):
        read_cvat(root).images[0].render(SIZE)
    with open(labelmap, "a") as handle:
        handle.write("again:250,50,83::\n")
    with pytest.raises(ClassTableError, match=r"labelmap.txt: line 4: colour \(250, 50, 83\)"):
        read_cvat(root)
    archive = write_cvat_export(tmp_path / "no_images", zip=True, num_images=2)
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(f"{archive}.2.zip", "w") as target:
        for name in source.namelist():
            if not name.startswith("JPEGImages/"):
                target.writestr(name, source.read(name))
    with pytest.raises(MissingFileError, match=r"JPEGImages: .*'Save images'"):
        read_cvat(f"{archive}.2.zip")


# LabelMe


def write_labelme(folder, shapes, name="a", size=SIZE, **fields):
    os.makedirs(folder, exist_ok=True)
    Image.new("RGB", size[::-1], (128, 128, 128)).save(os.path.join(folder, name + ".png"))
    value = {"version": "5.4.1", "shapes": shapes, "imagePath": name + ".png",
             "imageData": None, "imageHeight": size[0], "imageWidth": size[1], **fields}
    with open(os.path.join(folder, name + ".json"), "w") as handle:
        json.dump(value, handle)


def shape(label, points, shape_type="polygon"):
    return {"label": label, "points": points, "shape_type": shape_type, "group_id": None}


def test_labelme_image_data_and_image_path_give_the_same_images_and_masks(tmp_path):
    by_path = read_labelme(write_labelme_folder(tmp_path / "path", embed_image_data=False))
    embedded = read_labelme(write_labelme_folder(tmp_path / "data", embed_image_data=True))
    assert by_path.class_table.names == CLASS_NAMES and "no labels.txt" in by_path.classes_from
    assert by_path.images[0].image_id == "day0/img000" and by_path.splits == {}
    assert all(isinstance(item.image, bytes) for item in embedded.images)
    for a, b in zip(by_path.images, embedded.images):
        assert a.image_id == b.image_id and a.converter == "labelme-1"
        np.testing.assert_array_equal(pixels(a.image), pixels(b.image))
        np.testing.assert_array_equal(a.render(SIZE), b.render(SIZE))
    # PIL fills a polygon's outline too, which the image paints as background: a pixel wide.
    assert_masks_show_the_images(by_path, 0.97)


def test_labelme_shapes_match_numpy_geometry(tmp_path):
    ys, xs = np.mgrid[:SIZE[0], :SIZE[1]]
    write_labelme(tmp_path, [
        shape("box", [[40, 30], [10, 5]], "rectangle"),  # dragged up-left
        shape("disc", [[20, 24], [26, 24]], "circle"),
        shape("__ignore__", [[50, 40]], "point"),
        shape("wire", [[5, 44], [60, 44]], "line"),
    ])
    dataset = read_labelme(tmp_path)
    assert dataset.class_table.names == ("background", "box", "disc", "wire")
    ids = dataset.images[0].render(SIZE)
    box = (xs >= 10) & (xs <= 40) & (ys >= 5) & (ys <= 30)
    # Each later shape, grown by a pixel (PIL's outline); they paint over earlier ones.
    disc = (xs - 20) ** 2 + (ys - 24) ** 2 <= 7 ** 2
    wire = (np.abs(ys - 44) <= 6) & (xs >= 4) & (xs <= 61)
    point = (xs - 50) ** 2 + (ys - 40) ** 2 <= 6 ** 2
    np.testing.assert_array_equal(ids[box & ~disc & ~wire & ~point], 1)
    # Away from the circle's rim (1 pixel), the disc is exactly the numpy disc.
    radius = np.sqrt((xs - 20) ** 2 + (ys - 24) ** 2)
    assert (ids[radius <= 5] == 2).all() and (ids[(radius > 7) & box] == 1).all()
    assert abs((ids == 2).sum() - np.pi * 36) < 2 * np.pi * 6
    # A 10-pixel line 55 long: rows 39..49 at most, about 10 x 56 pixels.
    assert set(np.unique(ys[ids == 3])) <= set(range(39, 50))
    assert abs((ids == 3).sum() - 10 * 56) <= 2 * 56
    assert (ids[(np.abs(ys - 44) <= 3) & (xs > 5) & (xs < 60)] == 3).all()
    # The point: a disc of radius 5 ignored, within a pixel of its rim; the later line
    # covers its lower part (rows 39 on).
    distance = np.sqrt((xs - 50) ** 2 + (ys - 40) ** 2)
    assert (ids[(distance <= 4) & (ys < 39)] == 255).all()
    assert (ids[(distance <= 4) & (ys >= 40)] == 3).all() and not (ids[distance > 6] == 255).any()


def test_labelme_labels_txt_decides_ids_and_refuses_other_labels(tmp_path):
    write_labelme(tmp_path, [shape("cat", [[2, 2], [20, 2], [2, 20]]),
                             shape("dog", [[30, 30], [40, 30], [30, 40]])])
    labels = os.path.join(tmp_path, "labels.txt")
    with open(labels, "w") as handle:
        handle.write("__ignore__\n_background_\ndog\ncat\n")
    dataset = read_labelme(tmp_path)
    assert dataset.class_table.names == ("background", "dog", "cat")
    assert dataset.classes_from == labels and labels in dataset.images[0].sources
    ids = dataset.images[0].render(SIZE)
    assert ids[5, 5] == 2 and ids[32, 32] == 1 and ids[45, 60] == 0
    with open(labels, "w") as handle:
        handle.write("__ignore__\n_background_\ndog\n")
    with pytest.raises(LabelValueError, match=r"a.json: shape label 'cat' is not in .*labels.txt"):
        read_labelme(tmp_path)
    with open(labels, "w") as handle:
        handle.write("dog\n_background_\n")
    with pytest.raises(ClassTableError, match="labels.txt: .*_background_"):
        read_labelme(tmp_path)


def test_labelme_refuses_size_mismatch_and_leaves_out_jsons_without_their_image(tmp_path):
    write_labelme(tmp_path, [shape("cat", [[2, 2], [20, 2], [2, 20]])], imageHeight=50)
    write_labelme(tmp_path, [shape("cat", [[2, 2], [20, 2], [2, 20]])], name="b")
    os.remove(os.path.join(tmp_path, "b.png"))
    dataset = read_labelme(tmp_path)
    assert [item.image_id for item in dataset.images] == ["a"]
    assert dataset.left_out == ((os.path.join(tmp_path, "b.json"),
                                 "imagePath 'b.png' does not exist and there is no imageData"),)
    with pytest.raises(SizeMismatchError, match=r"a.json: imageHeight x imageWidth is 50x64 but "
                       r"the image is 48x64"):
        dataset.images[0].render(SIZE)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(MissingFileError, match=r"empty: holds no LabelMe .json"):
        read_labelme(tmp_path / "empty")


# COCO


def test_rle_decoding_equals_pycocotools_compressed_and_uncompressed():
    rng = np.random.default_rng(0)
    for height, width in ((1, 1), (7, 5), (48, 64), (33, 90)):
        blocks = rng.random((height // 3 + 1, width // 3 + 1)) < 0.4
        mask = np.kron(blocks, np.ones((3, 3), bool))[:height, :width]
        mask ^= rng.random((height, width)) < 0.05  # single pixels: runs of every length
        runs = rle_runs(mask)
        reference = coco_mask.decode(coco_mask.frPyObjects(
            {"counts": runs, "size": [height, width]}, height, width))
        np.testing.assert_array_equal(reference, mask)  # the fixture's runs are COCO's
        np.testing.assert_array_equal(decode_rle(runs, height, width), reference)
        compressed = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
        assert rle_string(runs) == compressed.decode("ascii")
        np.testing.assert_array_equal(decode_rle(compressed.decode(), height, width), reference)
    with pytest.raises(DataError, match="not 2x2"):
        decode_rle([1, 2], 2, 2, "x.json")


def test_polygon_masks_match_pycocotools_up_to_outline_pixels():
    """Tolerance: differing pixels lie within 1 pixel of the outline and are < 6% of the area."""
    rng = np.random.default_rng(1)
    height, width = SIZE
    ys, xs = np.mgrid[:height, :width] + 0.5
    for _ in range(30):
        count = int(rng.integers(3, 8))
        points = np.stack(
            [rng.uniform(-4, width + 4, count), rng.uniform(-4, height + 4, count)], 1
        )
        centre = points.mean(0)
        points = points[np.argsort(np.arctan2(*(points - centre).T[::-1]))]
        polygon = points.ravel().tolist()
        reference = coco_mask.decode(coco_mask.merge(
            coco_mask.frPyObjects([polygon], height, width)))
        ours = polygon_mask(polygon, height, width)
        differ = ours != reference
        assert differ.sum() <= 0.06 * max(reference.sum(), 1) + 4
        edges = zip(points, np.roll(points, -1, 0))
        distance = np.min([segment_distance(xs, ys, a, b) for a, b in edges], 0)
        assert (distance[differ] <= 1.0).all()


def segment_distance(xs, ys, a, b):
    d = b - a
    t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(d @ d, 1e-12), 0, 1)
    return np.hypot(xs - a[0] - t * d[0], ys - a[1] - t * d[1])


@pytest.mark.parametrize("rle", [False, True])
def test_coco_fixture_masks_match_the_images(tmp_path, rle):
    json_path, image_dir = write_coco_instances(tmp_path, rle=rle)
    dataset = read_coco_instances(json_path, image_dir)
    # Category ids 3 and 7, listed 7 first: ids by ascending category id.
    assert dataset.class_table.names == CLASS_NAMES and dataset.splits == {}
    assert dataset.images[0].image_id == "000000000000"
    assert dataset.images[0].sources == (json_path,) and dataset.images[0].converter == "coco-1"
    assert_masks_show_the_images(dataset, 0.99 if rle else 0.98)
    layout = read_coco_layout(tmp_path)  # annotations/instances_default.json + images/
    assert [i.image_id for i in layout.images] == [i.image_id for i in dataset.images]


def test_coco_overlaps_crowds_unannotated_and_missing_images(tmp_path):
    json_path, image_dir = write_coco_instances(tmp_path, rle=False, num_images=3)
    with open(json_path) as handle:
        value = json.load(handle)
    big = [[0, 0, 40, 0, 40, 40, 0, 40]]
    small = [[10, 10, 20, 10, 20, 20, 10, 20]]
    crowd = {"counts": rle_runs(np.pad(np.ones((4, 4)), ((30, 14), (30, 30)))), "size": [48, 64]}
    value["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": small, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 7, "segmentation": big, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 3, "segmentation": crowd, "iscrowd": 1},
        {"id": 4, "image_id": 2, "category_id": 7, "segmentation": big, "iscrowd": 0},
    ]
    with open(json_path, "w") as handle:
        json.dump(value, handle)
    dataset = read_coco_instances(json_path, image_dir)
    assert [i.image_id for i in dataset.images] == ["000000000000", "000000000001"]
    assert dataset.left_out == ((os.path.join(image_dir, "000000000002.jpg"), "no annotation"),)
    expected = np.zeros(SIZE, np.uint8)
    expected[:40, :40] = 2  # the big one first, though listed after the small one
    expected[10:20, 10:20] = 1
    expected[30:34, 30:34] = 255
    np.testing.assert_array_equal(dataset.images[0].render(SIZE), expected)
    with pytest.raises(SizeMismatchError, match=r"instances_default.json: the JSON says 48x64 "
                       r"but the image is 64x48"):
        dataset.images[0].render(SIZE[::-1])
    os.remove(os.path.join(image_dir, "000000000001.jpg"))
    with pytest.raises(MissingFileError, match=r"000000000001.jpg: image file of .* not exist"):
        read_coco_instances(json_path, image_dir)
    value["annotations"][0]["category_id"] = 5
    with open(json_path, "w") as handle:
        json.dump(value, handle)
    with pytest.raises(LabelValueError, match=r"annotation 1: category_id 5 is in no category"):
        read_coco_instances(json_path, image_dir)
