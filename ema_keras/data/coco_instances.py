"""COCO instance annotations as semantic masks, without pycocotools (`--dataset coco`).

    instances.json   {"images": [{id, file_name, height, width}],
                      "annotations": [{id, image_id, category_id, segmentation, iscrowd}],
                      "categories": [{id, name}]}
    images/...       the files `file_name` names, relative to the image folder

Ids: 0 is "background" (pixels no annotation covers), then the categories by
ascending category id, 1..N. A segmentation is a list of polygons
[x1, y1, x2, y2, ...] or a run-length encoding {counts, size: [h, w]}, its
counts a list (uncompressed) or the COCO API's compressed string; both are
decoded here as pycocotools does (RLE exactly; a polygon pixel is in when its
centre (x + 0.5, y + 0.5) is, which matches pycocotools' rasteriser up to
pixels on the outline).

Overlaps: instances are painted largest first (by decoded pixel count, ties
by annotation id), so a small object lying on a big one stays visible
instead of vanishing under it. `iscrowd: 1` regions are painted 255 (ignored)
after every instance: their pixels are a mix of objects and background.

An image of the JSON without any annotation is left out, named: an image
nobody annotated must not train as all background. A listed image file that
does not exist is refused, naming it.

`read_coco_layout` takes what `--data_dir` names: one JSON (its images in the
JSON's folder, or in `images/` or the folder above when the JSON is in
`annotations/`), or a folder `annotations/instances_<split>.json` with images
in `<split>/` (or `images/<split>/`, `images/`); several JSONs are splits.
"""

import json
import os

import numpy as np

from ema_keras.data.annotations import AnnotatedDataset, AnnotatedImage
from ema_keras.data.class_table import ClassTable, ClassTableError, default_palette
from ema_keras.data.errors import (
    CorruptFileError,
    DataError,
    LabelValueError,
    MissingFileError,
    SizeMismatchError,
)
from ema_keras.data.voc import IGNORE_LABEL

CONVERTER = "coco-1"
BACKGROUND = "background"
ANNOTATIONS_FOLDER = "annotations"
INSTANCES_PREFIX = "instances_"


def decode_rle(counts, height, width, where="<rle>"):
    """(H, W) uint8 0/1 of a COCO RLE: counts a list of runs or the compressed string."""
    if isinstance(counts, (str, bytes)):
        counts = _uncompress(counts.encode() if isinstance(counts, str) else counts, where)
    runs = np.asarray(counts, np.int64)
    if runs.ndim != 1 or (runs < 0).any() or runs.sum() != height * width:
        raise CorruptFileError(where, f"RLE runs cover {int(runs.sum())} pixels, not "
                               f"{height}x{width}")
    # Runs alternate 0 and 1, starting with 0, down the columns (Fortran order).
    values = np.arange(len(runs)) % 2
    return np.repeat(values.astype(np.uint8), runs).reshape((height, width), order="F")


def _uncompress(data, where):
    """Run lengths of the COCO API's string: 5-bit groups, '0'-based, deltas from runs[i-2]."""
    runs, position = [], 0
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(data):
                raise CorruptFileError(where, "compressed RLE counts end inside a number")
            group = data[position] - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift  # sign extension
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def polygon_mask(polygon, height, width):
    """(H, W) uint8 0/1: the pixels whose centres lie inside `polygon` [x1, y1, ...] (even-odd)."""
    xs, ys = np.asarray(polygon[0::2], float), np.asarray(polygon[1::2], float)
    mask = np.zeros((height, width), np.uint8)
    top, bottom = max(int(np.floor(ys.min())), 0), min(int(np.ceil(ys.max())) + 1, height)
    left, right = max(int(np.floor(xs.min())), 0), min(int(np.ceil(xs.max())) + 1, width)
    if top >= bottom or left >= right:
        return mask
    py, px = np.mgrid[top:bottom, left:right] + 0.5
    inside = np.zeros(py.shape, bool)
    for x1, y1, x2, y2 in zip(xs, ys, np.roll(xs, -1), np.roll(ys, -1)):
        crosses = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < at)
    mask[top:bottom, left:right] = inside
    return mask


def annotation_mask(annotation, height, width, where):
    """(H, W) uint8 0/1 of one annotation's segmentation (polygons or RLE)."""
    segmentation = annotation.get("segmentation")
    name = f"annotation {annotation.get('id')}"
    if isinstance(segmentation, dict):
        size = [int(n) for n in segmentation.get("size", ())]
        if size != [height, width]:
            raise SizeMismatchError(where, f"{name}: RLE size {size} is not the image's "
                                    f"[{height}, {width}]")
        return decode_rle(segmentation.get("counts", ()), height, width, f"{where} ({name})")
    if not isinstance(segmentation, list) or not segmentation:
        raise CorruptFileError(where, f"{name}: segmentation is neither polygons nor RLE")
    mask = np.zeros((height, width), np.uint8)
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise CorruptFileError(where, f"{name}: a polygon needs x, y pairs of 3 points or more")
        mask |= polygon_mask(polygon, height, width)
    return mask


def _renderer(where, annotations, ids, recorded_size):
    def render(size):
        size = tuple(int(n) for n in size)
        if size != recorded_size:
            raise SizeMismatchError(where, f"the JSON says {recorded_size[0]}x{recorded_size[1]} "
                                    f"but the image is {size[0]}x{size[1]}")
        label = np.zeros(size, np.uint8)
        masks = [(annotation_mask(a, *size, where), a) for a in annotations]
        things = [(m, a) for m, a in masks if not a.get("iscrowd")]
        # Larger first, so smaller objects are painted over them (module docstring).
        things.sort(key=lambda item: (-int(item[0].sum()), item[1].get("id", 0)))
        for mask, annotation in things:
            label[mask.astype(bool)] = ids[annotation["category_id"]]
        for mask, annotation in masks:
            if annotation.get("iscrowd"):
                label[mask.astype(bool)] = IGNORE_LABEL
        return label

    return render


def _class_table(categories, where):
    if not isinstance(categories, list) or not categories:
        raise ClassTableError(where, "has no categories")
    ordered = sorted(categories, key=lambda category: int(category["id"]))
    names = [BACKGROUND] + [str(category["name"]) for category in ordered]
    if len(set(names)) != len(names) or len({c["id"] for c in ordered}) != len(ordered):
        raise ClassTableError(where, "two categories share a name or an id (or one is "
                              f"called {BACKGROUND!r}, which is id 0)")
    ids = {int(category["id"]): i for i, category in enumerate(ordered, start=1)}
    return ClassTable(tuple(names), default_palette(len(names))), ids


def read_coco_instances(annotations_json, image_dir, *, id_prefix=""):
    """A COCO instances JSON with its image folder as an AnnotatedDataset (module docstring)."""
    where, image_dir = os.fspath(annotations_json), os.fspath(image_dir)
    try:
        with open(where, encoding="utf-8-sig") as handle:
            value = json.load(handle)
        images, annotations = value["images"], value.get("annotations", [])
        categories = value["categories"]
    except FileNotFoundError:
        raise MissingFileError(where, "COCO annotation file does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CorruptFileError(where, f"is not a COCO instances JSON ({error!r})") from None
    table, ids = _class_table(categories, where)
    by_image = {}
    for annotation in annotations:
        if annotation.get("category_id") not in ids:
            raise LabelValueError(where, f"annotation {annotation.get('id')}: category_id "
                                  f"{annotation.get('category_id')!r} is in no category")
        by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    known = {image.get("id") for image in images}
    strays = [a.get("id") for i, group in by_image.items() if i not in known for a in group]
    if strays:
        raise CorruptFileError(where, f"annotation {strays[0]} is of an image id in no 'images' "
                               f"entry ({len(strays)} such annotation(s))")
    annotated, left_out, seen = [], [], {}
    for image in images:
        file_name = str(image["file_name"]).replace("\\", "/")
        path = os.path.join(image_dir, *file_name.split("/"))
        image_id = id_prefix + os.path.splitext(file_name)[0]
        if image_id in seen:
            raise DataError(where, f"{seen[image_id]} and {file_name} have the same name "
                            "without extension; one file per id")
        seen[image_id] = file_name
        if not by_image.get(image["id"]):
            left_out.append((path, "no annotation"))
            continue
        if not os.path.isfile(path):
            raise MissingFileError(path, f"image file of {where} does not exist")
        size = (int(image["height"]), int(image["width"]))
        annotated.append(AnnotatedImage(
            image_id, path, (where,), render=_renderer(where, by_image[image["id"]], ids, size),
            converter=CONVERTER,
        ))
    if not annotated:
        raise MissingFileError(where, "no image of this JSON has an annotation")
    return AnnotatedDataset(
        kind="coco", root=image_dir, class_table=table, images=tuple(annotated),
        left_out=tuple(left_out), classes_from=f"{where} (categories)",
    )


def _image_dir_of(json_path, split=None):
    """The folder the JSON's file_names are relative to (module docstring), found by trying."""
    here = os.path.dirname(os.path.abspath(json_path))
    candidates = [here]
    if os.path.basename(here) == ANNOTATIONS_FOLDER:
        up = os.path.dirname(here)
        if split:
            candidates = [os.path.join(up, split), os.path.join(up, "images", split)]
        candidates += [os.path.join(up, "images"), up]
    try:
        with open(json_path, encoding="utf-8-sig") as handle:
            first = json.load(handle)["images"][0]["file_name"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return candidates[0]  # read_coco_instances names what is wrong with the JSON
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, first)):
            return folder
    raise MissingFileError(json_path, f"its first image {first!r} is in none of "
                           f"{', '.join(candidates)}")


def read_coco_layout(data_dir):
    """What `--data_dir` names for `--dataset coco` (module docstring) as an AnnotatedDataset."""
    data_dir = os.fspath(data_dir)
    if os.path.isfile(data_dir):
        return read_coco_instances(data_dir, _image_dir_of(data_dir))
    folder = os.path.join(data_dir, ANNOTATIONS_FOLDER)
    names = sorted(n for n in os.listdir(folder) if n.startswith(INSTANCES_PREFIX)
                   and n.endswith(".json")) if os.path.isdir(folder) else []
    if not names:
        raise MissingFileError(folder, "no instances_<split>.json: --dataset coco takes a COCO "
                               "instances JSON or a folder annotations/instances_<split>.json")
    if len(names) == 1:
        path = os.path.join(folder, names[0])
        split = names[0][len(INSTANCES_PREFIX): -len(".json")]
        return read_coco_instances(path, _image_dir_of(path, split))
    parts = {}
    for name in names:
        split, path = name[len(INSTANCES_PREFIX): -len(".json")], os.path.join(folder, name)
        parts[split] = read_coco_instances(path, _image_dir_of(path, split), id_prefix=split + "/")
    first = next(iter(parts.values()))
    for split, part in parts.items():
        if part.class_table != first.class_table:
            raise ClassTableError(os.path.join(folder, f"{INSTANCES_PREFIX}{split}.json"),
                                  f"its categories differ from {names[0]}'s")
    return AnnotatedDataset(
        kind="coco", root=data_dir, class_table=first.class_table,
        images=tuple(image for part in parts.values() for image in part.images),
        splits={split: tuple(i.image_id for i in part.images) for split, part in parts.items()},
        left_out=tuple(item for part in parts.values() for item in part.left_out),
        classes_from=first.classes_from,
    )
