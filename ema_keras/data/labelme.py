"""A folder of LabelMe JSON files, drawn as labelme draws them (`--dataset labelme`).

    mydata/
      labels.txt           optional, labelme2voc's convention: __ignore__, _background_, ...
      a.json               {"shapes": [...], "imagePath": "a.jpg", "imageData": null | base64}
      a.jpg
      day2/b.json          any subfolders; the image id is the JSON's path without .json

Shapes are rasterised exactly as `labelme.utils.shape_to_mask` does, with PIL:
polygons and rectangles filled with their outline, circles from the centre
and a point on the rim, lines and line strips 10 pixels wide, points as discs
of radius 5, `mask` shapes as their bitmap in their box; they are painted in
file order, later shapes over earlier ones (labelme2voc's `shapes_to_label`).
One difference: a rectangle dragged up or left is drawn, where newer Pillow
refuses reversed corners.

Classes: labels.txt when the folder has one (labelme2voc: line 0
`__ignore__`, line 1 `_background_` = id 0, then one label per line; a shape
labelled otherwise is refused, naming its JSON), else every label found,
sorted, after `_background_`. `_background_` is called "background";
`__ignore__` shapes paint 255. The image is `imageData` when the JSON embeds
it, else the file `imagePath` names; a JSON whose image is neither is left out,
named. The JSON's imageHeight and imageWidth must be the image's.
"""

import base64
import binascii
import io
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from ema_keras.data.annotations import AnnotatedDataset, AnnotatedImage
from ema_keras.data.class_table import IGNORE_NAME, ClassTable, ClassTableError, default_palette
from ema_keras.data.errors import (
    CorruptFileError,
    LabelValueError,
    MissingFileError,
    SizeMismatchError,
)
from ema_keras.data.voc import IGNORE_LABEL

CONVERTER = "labelme-1"
LABELS_FILE = "labels.txt"
BACKGROUND = "_background_"  # labelme2voc's name of id 0
LINE_WIDTH, POINT_SIZE = 10, 5  # shape_to_mask's defaults
# shape_type -> the number of points labelme asserts (None: at least 3, a polygon).
_POINTS = {"polygon": None, "rectangle": 2, "circle": 2, "line": 2, "linestrip": 0, "point": 1,
           "mask": 2}


def shape_mask(size, shape):
    """(H, W) bool of one shape as `labelme.utils.shape_to_mask` draws it (module docstring)."""
    kind = shape.get("shape_type") or "polygon"
    xy = [tuple(float(c) for c in point) for point in shape["points"]]
    if kind == "mask":
        bitmap = np.asarray(Image.open(io.BytesIO(base64.b64decode(shape["mask"])))) > 0
        mask = np.zeros(size, bool)
        (x1, y1), (x2, y2) = np.asarray(xy).astype(int)
        box = mask[y1:y2 + 1, x1:x2 + 1]
        box[...] = bitmap[: box.shape[0], : box.shape[1]]
        return mask
    canvas = Image.new("L", size[::-1], 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif kind == "rectangle":
        (x1, y1), (x2, y2) = xy
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=LINE_WIDTH)
    elif kind == "point":
        (cx, cy), r = xy[0], POINT_SIZE
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.asarray(canvas, bool)


def _check_shape(shape, path, index):
    kind = shape.get("shape_type") or "polygon"
    if kind not in _POINTS:
        raise CorruptFileError(path, f"shape {index}: shape_type {kind!r} is not one labelme draws")
    points = shape.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in points
    ):
        raise CorruptFileError(path, f"shape {index}: points are not a list of [x, y]")
    wanted = _POINTS[kind]
    if (wanted is None and len(points) < 3) or (wanted == 0 and len(points) < 2) or (
        wanted and len(points) != wanted
    ):
        needed = "3 or more" if wanted is None else "2 or more" if wanted == 0 else wanted
        raise CorruptFileError(path, f"shape {index} ({kind}, label {shape.get('label')!r}) has "
                               f"{len(points)} point(s); labelme needs {needed}")
    if kind == "mask" and not isinstance(shape.get("mask"), str):
        raise CorruptFileError(path, f"shape {index} is a mask shape without its base64 'mask'")


def _read_json(path):
    try:
        with open(path, encoding="utf-8-sig") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split())
        raise CorruptFileError(path, f"is not readable JSON ({message})") from None
    return value


def _read_labels_file(path):
    """{label: id} and the ClassTable of labelme2voc's labels.txt (module docstring)."""
    with open(path, encoding="utf-8-sig") as handle:
        lines = [line.strip() for line in handle.read().splitlines()]
    lines = [line for line in lines if line]
    ids = {IGNORE_NAME: IGNORE_LABEL}
    if lines and lines[0] == IGNORE_NAME:
        lines = lines[1:]
    if not lines or lines[0] != BACKGROUND:
        raise ClassTableError(path, f"labelme2voc's labels.txt starts with {IGNORE_NAME} and "
                              f"{BACKGROUND} (id 0, the pixels no shape covers)")
    for name in lines:
        if name in ids:
            raise ClassTableError(path, f"label {name!r} is listed twice")
        ids[name] = len(ids) - 1
    return ids


def _table(ids):
    names = ["background" if name == BACKGROUND else name
             for name, i in sorted(ids.items(), key=lambda item: item[1]) if i != IGNORE_LABEL]
    return ClassTable(tuple(names), default_palette(len(names)))


def _image_of(value, json_path):
    """The image's encoded bytes or path, or (None, why) when there is none."""
    data = value.get("imageData")
    if data:
        try:
            return base64.b64decode(data, validate=False), None
        except (binascii.Error, ValueError):
            raise CorruptFileError(json_path, "imageData is not base64") from None
    relative = value.get("imagePath")
    if not relative:
        return None, "neither imageData nor imagePath"
    # labelme on Windows writes backslashes.
    image = os.path.normpath(os.path.join(os.path.dirname(json_path),
                                          *relative.replace("\\", "/").split("/")))
    if not os.path.isfile(image):
        return None, f"imagePath {relative!r} does not exist and there is no imageData"
    return image, None


def _renderer(json_path, shapes, ids, recorded_size):
    def render(size):
        size = tuple(int(n) for n in size)
        if recorded_size and recorded_size != size:
            raise SizeMismatchError(
                json_path, f"imageHeight x imageWidth is {recorded_size[0]}x{recorded_size[1]} "
                f"but the image is {size[0]}x{size[1]}"
            )
        label = np.zeros(size, np.uint8)
        for index, shape in enumerate(shapes):
            try:
                label[shape_mask(size, shape)] = ids[shape["label"]]
            except (OSError, ValueError, TypeError) as error:
                message = " ".join(str(error).split())
                raise CorruptFileError(json_path, f"shape {index} cannot be drawn ({message})") \
                    from None
        return label

    return render


def read_labelme(folder):
    """The LabelMe folder at `folder` as an AnnotatedDataset (see the module docstring)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise MissingFileError(folder, "no such folder; --dataset labelme takes a folder of "
                               "LabelMe JSON files")
    found = {}
    for parent, folders, names in os.walk(folder):
        folders.sort()
        for name in sorted(names):
            if name.lower().endswith(".json") and not name.startswith("."):
                path = os.path.join(parent, name)
                found[os.path.relpath(path, folder)[: -len(".json")].replace(os.sep, "/")] = path
    if not found:
        raise MissingFileError(folder, "holds no LabelMe .json file (any subfolder)")
    left_out, files = [], {}
    for image_id, path in found.items():
        value = _read_json(path)
        if not isinstance(value, dict) or not isinstance(value.get("shapes"), list):
            left_out.append((path, "not a LabelMe file (no 'shapes' list)"))
            continue
        for index, shape in enumerate(value["shapes"]):
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
                raise CorruptFileError(path, f"shape {index} has no label")
            _check_shape(shape, path, index)
        files[image_id] = (path, value)
    labels_path = os.path.join(folder, LABELS_FILE)
    if os.path.isfile(labels_path):
        ids, classes_from = _read_labels_file(labels_path), labels_path
        for path, value in files.values():
            for shape in value["shapes"]:
                if shape["label"] not in ids:
                    raise LabelValueError(path, f"shape label {shape['label']!r} is not in "
                                          f"{labels_path}")
    else:
        found_labels = {s["label"] for _, value in files.values() for s in value["shapes"]}
        ids = {IGNORE_NAME: IGNORE_LABEL, BACKGROUND: 0}
        for name in sorted(found_labels - set(ids)):
            ids[name] = len(ids) - 1
        classes_from = f"the shape labels of the {len(files)} LabelMe files, sorted (no labels.txt)"
    annotated = []
    for image_id, (path, value) in files.items():
        image, why = _image_of(value, path)
        if image is None:
            left_out.append((path, why))
            continue
        height, width = value.get("imageHeight"), value.get("imageWidth")
        recorded = (int(height), int(width)) if height and width else None
        sources = (path, labels_path) if classes_from == labels_path else (path,)
        annotated.append(AnnotatedImage(
            image_id, image, sources, render=_renderer(path, value["shapes"], ids, recorded),
            converter=CONVERTER,
        ))
    if not annotated:
        raise MissingFileError(folder, f"no LabelMe file with its image ({len(left_out)} left "
                               f"out, e.g. {left_out[0][0]}: {left_out[0][1]})")
    return AnnotatedDataset(
        kind="labelme", root=folder, class_table=_table(ids), images=tuple(annotated),
        left_out=tuple(left_out), classes_from=classes_from,
    )
