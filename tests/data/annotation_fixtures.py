"""Small learnable datasets as annotation tools export them: CVAT, LabelMe, COCO instances.

Every image: a noisy gray background with 1 to 3 solid shapes, one per third
of the width so that none overlaps (every reader's paint order then gives the
same ids): class 1 "box" a reddish axis-aligned rectangle, class 2
"triangle" a bluish triangle (3 classes with background). The annotations
are those shapes, in each tool's own terms. Pixel (row r, column c) has its
centre at (x, y) = (c, r) here; COCO's coordinates put it at (c + 0.5, r + 0.5).
"""

import base64
import builtins
import json
import os
import shutil
import zipfile

import numpy as np
from PIL import Image

CLASS_NAMES = ("background", "box", "triangle")
CVAT_COLOURS = ((0, 0, 0), (250, 50, 83), (51, 221, 255))  # what CVAT picks for new labels
PIXEL_COLOURS = {0: (128, 128, 128), 1: (200, 50, 50), 2: (50, 80, 210)}
COCO_CATEGORY_IDS = {1: 3, 2: 7}  # class -> category id: not 1..N, to test the mapping


def inside_triangle(points, height, width):
    """(H, W) bool: pixel centres (c, r) strictly inside or on the triangle `points`."""
    ys, xs = np.mgrid[:height, :width].astype(float)
    (x1, y1), (x2, y2), (x3, y3) = points
    sides = [(xs - xa) * (yb - ya) - (ys - ya) * (xb - xa)
             for (xa, ya), (xb, yb) in (((x1, y1), (x2, y2)), ((x2, y2), (x3, y3)),
                                        ((x3, y3), (x1, y1)))]
    return np.all([s >= 0 for s in sides], 0) | np.all([s <= 0 for s in sides], 0)


def draw_scene(rng, size):
    """(image (H, W, 3) uint8, ids (H, W) uint8, shapes [(class, kind, geometry)])."""
    height, width = size
    image = rng.normal(128, 10, (height, width, 3))
    ids = np.zeros(size, np.uint8)
    band = width // 3
    shapes = []
    for slot in sorted(rng.choice(3, size=int(rng.integers(1, 4)), replace=False)):
        class_id = int(rng.integers(1, 3))
        left, right = int(slot) * band + 1, (int(slot) + 1) * band - 2
        x0, x1 = sorted(int(x) for x in rng.choice(np.arange(left, right + 1), 2, replace=False))
        y0 = int(rng.integers(1, height // 3))
        y1 = int(rng.integers(height // 2, height - 1))
        if x1 - x0 < 4:
            x0, x1 = left, right
        if class_id == 1:
            geometry = (x0, y0, x1, y1)  # inclusive pixel columns and rows
            region = np.zeros(size, bool)
            region[y0:y1 + 1, x0:x1 + 1] = True
            shapes.append((1, "rectangle", geometry))
        else:
            geometry = ((x0, y1), ((x0 + x1) / 2, y0), (x1, y1))
            region = inside_triangle(geometry, height, width)
            shapes.append((2, "polygon", geometry))
        ids[region] = class_id
        image[region] = np.asarray(PIXEL_COLOURS[class_id]) + rng.normal(0, 6, (region.sum(), 3))
    return image.clip(0, 255).astype(np.uint8), ids, shapes


def _save(array, path, **options):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **options)


def write_cvat_export(folder, *, zip=False, size=(48, 64), num_images=8, subsets=None, seed=0):
    """A CVAT "Segmentation mask 1.1" export in `folder`; returns its folder or its .zip.

    subsets: None writes ImageSets/Segmentation/default.txt only (CVAT's "no
    subset"); a tuple of names spreads the images over them in turn. Even
    images are JPEG, odd ones PNG. With zip=True only the .zip remains, its
    members at the top as CVAT writes them.
    """
    rng = np.random.default_rng(seed)
    root = os.path.join(os.fspath(folder), "cvat_export")
    with_subsets = tuple(subsets or ("default",))
    listed = {name: [] for name in with_subsets}
    colours = np.asarray(CVAT_COLOURS, np.uint8)
    for index in range(num_images):
        stem = f"frame_{index:06d}"
        image, ids, _ = draw_scene(rng, size)
        if index % 2:
            _save(image, os.path.join(root, "JPEGImages", stem + ".png"))
        else:
            _save(image, os.path.join(root, "JPEGImages", stem + ".jpg"), quality=95)
        _save(colours[ids], os.path.join(root, "SegmentationClass", stem + ".png"))
        _save(ids, os.path.join(root, "SegmentationObject", stem + ".png"))  # not read
        listed[with_subsets[index % len(with_subsets)]].append(stem)
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"), exist_ok=True)
    for name, stems in listed.items():
        with open(os.path.join(root, "ImageSets", "Segmentation", name + ".txt"), "w") as handle:
            handle.write("".join(stem + "\n" for stem in stems))
    with open(os.path.join(root, "labelmap.txt"), "w") as handle:
        handle.write("# label:color_rgb:parts:actions\n")
        for name, colour in builtins.zip(CLASS_NAMES, CVAT_COLOURS):
            handle.write(f"{name}:{','.join(map(str, colour))}::\n")
    if not zip:
        return root
    archive_path = root + ".zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for parent, _, names in sorted(os.walk(root)):
            for name in sorted(names):
                path = os.path.join(parent, name)
                archive.write(path, os.path.relpath(path, root).replace(os.sep, "/"))
    shutil.rmtree(root)
    return archive_path


def write_labelme_folder(folder, *, embed_image_data, size=(48, 64), num_images=8, seed=0):
    """LabelMe JSON files (in two subfolders) as labelme 5 saves them; returns `folder`.

    embed_image_data: the JSON holds the JPEG's bytes (`imageData`) and no image
    file is written; else `imagePath` names the JPEG beside the JSON and
    `imageData` is null. Boxes are rectangles, triangles polygons.
    """
    folder = os.fspath(folder)
    rng = np.random.default_rng(seed)
    for index in range(num_images):
        relative = f"day{index % 2}/img{index:03d}"
        image, _, shapes = draw_scene(rng, size)
        json_path = os.path.join(folder, relative + ".json")
        image_path = os.path.join(folder, relative + ".jpg")
        _save(image, image_path, quality=95)
        with open(image_path, "rb") as handle:
            data = handle.read()
        if embed_image_data:
            os.remove(image_path)
        value = {
            "version": "5.4.1",
            "flags": {},
            "shapes": [
                {
                    "label": CLASS_NAMES[class_id],
                    "points": ([[g[0], g[1]], [g[2], g[3]]] if kind == "rectangle"
                               else [list(p) for p in g]),
                    "group_id": None,
                    "description": "",
                    "shape_type": kind,
                    "flags": {},
                    "mask": None,
                }
                for class_id, kind, g in shapes
            ],
            "imagePath": os.path.basename(image_path),
            "imageData": base64.b64encode(data).decode("ascii") if embed_image_data else None,
            "imageHeight": size[0],
            "imageWidth": size[1],
        }
        with open(json_path, "w") as handle:
            json.dump(value, handle, indent=2)
    return folder


def rle_runs(mask):
    """COCO run lengths of a 0/1 mask: alternating 0s and 1s down the columns, 0s first."""
    flat = np.asarray(mask, np.uint8).ravel(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return [0] + runs if flat[0] else runs


def rle_string(runs):
    """The COCO API's compressed counts string of `runs` (a port of its rleToString)."""
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def write_coco_instances(folder, *, rle, size=(48, 64), num_images=8, seed=0):
    """A COCO instances JSON and its images; returns (json_path, image_dir).

    rle=False: polygons (a box as its 4 corners); rle=True: compressed RLE
    strings for even images, uncompressed count lists for odd ones. Category
    ids are COCO_CATEGORY_IDS, listed in descending order.
    """
    folder = os.fspath(folder)
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(folder, "images")
    images, annotations = [], []
    for index in range(num_images):
        image, ids, shapes = draw_scene(rng, size)
        file_name = f"{index:012d}.jpg"
        _save(image, os.path.join(image_dir, file_name), quality=95)
        images.append({"id": index + 1, "file_name": file_name, "height": size[0],
                       "width": size[1]})
        for class_id, kind, g in shapes:
            if kind == "rectangle":
                x0, y0, x1, y1 = g
                corners = [(x0, y0), (x1 + 1, y0), (x1 + 1, y1 + 1), (x0, y1 + 1)]
            else:
                corners = [(x + 0.5, y + 0.5) for x, y in g]
            region = np.zeros(size, np.uint8)
            if kind == "rectangle":
                region[g[1]:g[3] + 1, g[0]:g[2] + 1] = 1
            else:
                region = inside_triangle(g, *size).astype(np.uint8)
            if not rle:
                segmentation = [[float(c) for corner in corners for c in corner]]
            elif index % 2 == 0:
                segmentation = {"counts": rle_string(rle_runs(region)), "size": list(size)}
            else:
                segmentation = {"counts": rle_runs(region), "size": list(size)}
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1,
                "category_id": COCO_CATEGORY_IDS[class_id], "segmentation": segmentation,
                "area": float(region.sum()), "bbox": [], "iscrowd": 0,
            })
    categories = [{"id": COCO_CATEGORY_IDS[c], "name": CLASS_NAMES[c], "supercategory": ""}
                  for c in (2, 1)]
    json_path = os.path.join(folder, "annotations", "instances_default.json")
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    with open(json_path, "w") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories},
                  handle)
    return json_path, image_dir
