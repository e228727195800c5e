"""A CVAT "Segmentation mask 1.1" export, as a folder or its .zip (`--dataset cvat`).

    export/ (or export.zip, possibly with one folder around it)
      labelmap.txt                    "# label:color_rgb:parts:actions", then name:r,g,b::
      SegmentationClass/<stem>.png    RGB colour masks, one colour per label
      SegmentationObject/<stem>.png   instance masks (not used)
      ImageSets/Segmentation/*.txt    stems per subset (default.txt, train.txt, ...)
      JPEGImages/<stem>.<ext>         the images, when exported with "Save images"

Class ids are the labelmap's line order; CVAT writes unlabelled pixels as
`background:0,0,0::`, usually its first line. A mask colour no line gives is
refused naming the mask and the colour (also black when the labelmap has no
background line: guessing it would train unlabelled pixels as some class).
Every subset file is a split, except a lone `default.txt` (CVAT's name for
"no subset"): then a seeded split is drawn. A listed image without a mask is
left out, named; an export without its images is refused, since CVAT only
writes them when asked to.

A zip is read where it lies, never extracted: images are its members' bytes
and masks are decoded from the member when rendered, so the zip is the one
source of every mask.
"""

import io
import os
import zipfile

import numpy as np
from PIL import Image

from ema_keras.data.annotations import AnnotatedDataset, AnnotatedImage
from ema_keras.data.class_table import ClassTable, ClassTableError
from ema_keras.data.errors import (
    CorruptFileError,
    EmptySplitError,
    LabelValueError,
    MissingFileError,
    UnsupportedModeError,
)
from ema_keras.data.folder import IMAGE_SUFFIXES

CONVERTER = "cvat-1"
LABELMAP = "labelmap.txt"
MASKS = "SegmentationClass"
IMAGES = "JPEGImages"
SUBSETS = "ImageSets/Segmentation"
DEFAULT_SUBSET = "default"
BLACK = (0, 0, 0)


class _Folder:
    """The export's files by `/`-separated name relative to its top, on disk."""

    def __init__(self, root):
        self.root = root
        self.names = set()
        for parent, folders, files in os.walk(root):
            folders.sort()
            for name in files:
                path = os.path.relpath(os.path.join(parent, name), root)
                self.names.add(path.replace(os.sep, "/"))

    def where(self, name):
        return os.path.join(self.root, *name.split("/"))

    def read(self, name):
        with open(self.where(name), "rb") as handle:
            return handle.read()

    def image(self, name):
        return self.where(name)


class _Zip:
    """The same for a .zip, whose names may sit under one folder (a zipped export folder)."""

    def __init__(self, path):
        self.root = path
        try:
            with zipfile.ZipFile(path) as archive:
                members = [name for name in archive.namelist() if not name.endswith("/")]
        except (zipfile.BadZipFile, OSError) as error:
            raise CorruptFileError(path, f"is not a readable zip ({error})") from None
        tops = sorted({name[: -len(LABELMAP)] for name in members
                       if name == LABELMAP or name.endswith("/" + LABELMAP)})
        # The shallowest labelmap.txt marks the export's top folder.
        self.prefix = min(tops, key=lambda top: top.count("/")) if tops else ""
        self.names = {name[len(self.prefix):] for name in members if name.startswith(self.prefix)}

    def where(self, name):
        return os.path.join(self.root, self.prefix + name)

    def read(self, name):
        # Opened per read: renders run in threads, and one ZipFile shared by them is not safe.
        with zipfile.ZipFile(self.root) as archive:
            return archive.read(self.prefix + name)

    def image(self, name):
        return self.read(name)


def parse_labelmap(text, path):
    """The ClassTable of a labelmap.txt's text: ids in line order, the labels' colours."""
    names, colours = [], []
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # name:color:parts:actions, and a name may itself hold ':' (CVAT allows it).
        fields = line.rsplit(":", 3)
        if len(fields) != 4:
            raise ClassTableError(path, f"line {line_number}: {line!r} is not name:r,g,b:parts:"
                                  "actions")
        name, colour_text = fields[0].strip(), fields[1]
        try:
            colour = tuple(int(c) for c in colour_text.split(","))
        except ValueError:
            colour = ()
        if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
            raise ClassTableError(path, f"line {line_number}: colour {colour_text!r} of {name!r} "
                                  "is not r,g,b in 0..255")
        if name in names:
            raise ClassTableError(path, f"line {line_number}: label {name!r} is listed twice")
        if colour in colours:
            other = names[colours.index(colour)]
            raise ClassTableError(path, f"line {line_number}: colour {colour} is also {other!r}'s;"
                                  " the masks could not tell them apart")
        names.append(name)
        colours.append(colour)
    if not names:
        raise ClassTableError(path, "lists no label (name:r,g,b:: lines)")
    return ClassTable(tuple(names), tuple(colours), colours=tuple(colours))


def decode_colour_mask(data, name, table):
    """(H, W) training ids of an encoded CVAT colour mask; refusals name `name`."""
    try:
        mask = Image.open(io.BytesIO(data))
        mask.load()
    except (OSError, SyntaxError, ValueError) as error:
        message = " ".join(str(error).split())
        raise CorruptFileError(name, f"cannot decode the mask ({message})") from None
    if mask.mode not in ("RGB", "RGBA", "P", "L"):
        raise UnsupportedModeError(name, f"mask mode {mask.mode!r} is not an RGB colour mask")
    try:
        return table.ids_of_mask(np.asarray(mask.convert("RGB")), name)
    except LabelValueError as error:
        if BLACK in table.colours or "(0, 0, 0)" not in error.reason:
            raise
        raise LabelValueError(name, error.reason + f"; CVAT writes unlabelled pixels black: add "
                              f"'background:0,0,0::' as the first line of {LABELMAP}") from None


def _read_subsets(store):
    """{subset: stems} of ImageSets/Segmentation/*.txt, in file name order."""
    subsets = {}
    for name in sorted(n for n in store.names if n.startswith(SUBSETS + "/")):
        if "/" in name[len(SUBSETS) + 1:] or not name.endswith(".txt"):
            continue
        lines = store.read(name).decode("utf-8-sig", errors="replace").splitlines()
        subsets[name[len(SUBSETS) + 1: -len(".txt")]] = tuple(
            dict.fromkeys(line.strip() for line in lines if line.strip())
        )
    if not subsets:
        raise MissingFileError(store.where(SUBSETS), "no subset lists (default.txt, ...): is this"
                               " a CVAT 'Segmentation mask 1.1' export?")
    return subsets


def read_cvat(path):
    """The CVAT export folder or .zip at `path` as an AnnotatedDataset (module docstring)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        store = _Folder(path)
    elif os.path.isfile(path):
        store = _Zip(path)
    else:
        raise MissingFileError(path, "no such folder or .zip; --dataset cvat takes a CVAT "
                               "'Segmentation mask 1.1' export")
    if LABELMAP not in store.names:
        raise MissingFileError(store.where(LABELMAP), "no labelmap.txt: is this a CVAT "
                               "'Segmentation mask 1.1' export?")
    labelmap = store.where(LABELMAP)
    table = parse_labelmap(store.read(LABELMAP).decode("utf-8-sig", errors="replace"), labelmap)
    masks = {n[len(MASKS) + 1: -len(".png")]: n for n in store.names
             if n.startswith(MASKS + "/") and n.lower().endswith(".png")}
    images = {}
    for name in store.names:
        stem, suffix = os.path.splitext(name[len(IMAGES) + 1:])
        if name.startswith(IMAGES + "/") and suffix.lower() in IMAGE_SUFFIXES:
            images[stem] = name
    subsets = _read_subsets(store)
    listed = list(dict.fromkeys(stem for stems in subsets.values() for stem in stems))
    left_out = [(store.where(f"{MASKS}/{stem}.png"), f"listed in {SUBSETS}/ but has no mask")
                for stem in listed if stem not in masks]
    chosen = set(listed)
    left_out += [(store.where(masks[stem]), f"mask of no image listed in {SUBSETS}/*.txt")
                 for stem in sorted(masks) if stem not in chosen]
    usable = [stem for stem in listed if stem in masks]
    if not usable:
        raise MissingFileError(store.where(MASKS), f"no mask of an image listed in {SUBSETS}/")
    missing = [stem for stem in usable if stem not in images]
    if len(missing) == len(usable):
        raise MissingFileError(store.where(IMAGES), "the export holds no images: export again "
                               "from CVAT with 'Save images' ticked")
    if missing:
        raise MissingFileError(store.where(f"{IMAGES}/{missing[0]}.*"),
                               f"no image for this mask's stem ({len(missing)} such stem(s))")
    sources = (store.root,) if isinstance(store, _Zip) else None

    def render_mask(mask_name):
        return lambda size: decode_colour_mask(
            store.read(mask_name), store.where(mask_name), table
        )

    annotated = tuple(
        AnnotatedImage(
            stem, store.image(images[stem]),
            sources or (store.where(masks[stem]), labelmap),
            render=render_mask(masks[stem]), converter=CONVERTER,
        )
        for stem in usable
    )
    splits = {}
    if set(subsets) != {DEFAULT_SUBSET}:
        for subset, stems in subsets.items():
            splits[subset] = tuple(stem for stem in stems if stem in masks)
            if not splits[subset]:
                raise EmptySplitError(store.where(f"{SUBSETS}/{subset}.txt"),
                                      "lists no image with a mask")
    return AnnotatedDataset(
        kind="cvat", root=path, class_table=table, images=annotated, splits=splits,
        left_out=tuple(left_out), classes_from=labelmap,
    )
