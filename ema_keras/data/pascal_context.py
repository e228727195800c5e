"""PASCAL Context as mmsegmentation prepares it from the official release.

    <root>/VOC2010/JPEGImages/<id>.jpg
    <root>/VOC2010/SegmentationClassContext/<id>.png      8-bit grayscale ids
    <root>/VOC2010/ImageSets/SegmentationContext/{train,val}.txt

(mmsegmentation's `pascal_context.py` converter writes the PNGs from the
Context annotations `trainval_merged.json` with the Detail API: 0 is
background, 1..59 the 59 classes, in the order below.) 4,998 train / 5,105
val images. The literature reads it two ways, and both are datasets here:

- `pascal_context` (59 classes, the common one, EMANet's 53.1): background
  is ignored, class k is training id k - 1;
- `pascal_context_60` (60 classes): background is class 0, ids as stored.
"""

import os

from ema_keras.data.dataset_spec import Dataset, Example, checked_examples, label_map_from_pairs
from ema_keras.data.errors import MissingFileError
from ema_keras.data.voc import IGNORE_LABEL, read_id_list, voc_colormap

IMAGE_FOLDER, LABEL_FOLDER = "JPEGImages", "SegmentationClassContext"
LIST_FOLDER = os.path.join("ImageSets", "SegmentationContext")
URL = "https://cs.stanford.edu/~roozbeh/pascal-context/"

CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book",
    "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck",
    "tvmonitor", "wall", "water", "window", "wood",
)  # fmt: skip
CLASSES_60 = ("background",) + CLASSES
# Background ignored: stored k -> k - 1 (what mmsegmentation's reduce_zero_label does).
LABEL_MAP_59 = label_map_from_pairs(((k, k - 1) for k in range(1, 60)), IGNORE_LABEL)
LABEL_MAP_60 = label_map_from_pairs(((k, k) for k in range(60)), IGNORE_LABEL)
# The release has no palette: the VOC colour map gives every id its own colour.
PALETTE_60 = tuple(tuple(int(c) for c in colour) for colour in voc_colormap()[:60])


def find_context_root(path):
    """The VOC2010 folder holding ImageSets/SegmentationContext: `path`, or below it."""
    path = os.fspath(path)
    for candidate in (
        path,
        os.path.join(path, "VOC2010"),
        os.path.join(path, "VOCdevkit", "VOC2010"),
    ):
        if os.path.isdir(os.path.join(candidate, LIST_FOLDER)):
            return candidate
    raise MissingFileError(
        path, f"no PASCAL Context folder here (expected {LIST_FOLDER}/ in it or in VOC2010/)"
    )


def _reader(label_map):
    def read_split(root, split, *, check_files=True, **unused):
        """The examples listed by ImageSets/SegmentationContext/<split>.txt."""
        root = find_context_root(root)
        list_path = os.path.join(root, LIST_FOLDER, f"{split}.txt")
        examples = [
            Example(
                image_id,
                os.path.join(root, IMAGE_FOLDER, f"{image_id}.jpg"),
                os.path.join(root, LABEL_FOLDER, f"{image_id}.png"),
                label_map,
            )
            for image_id in read_id_list(list_path)
        ]
        return checked_examples(list_path, examples, check_files)

    return read_split


_COMMON = dict(
    folder="VOCdevkit",
    find_root=find_context_root,
    splits=("train", "val"),
    where_to_get=f"VOC2010 and trainval_merged.json ({URL}), converted by mmsegmentation's "
    "tools/dataset_converters/pascal_context.py",
)
DATASET = Dataset(
    name="pascal_context",
    description="PASCAL Context, 59 classes (background ignored)",
    class_names=CLASSES,
    palette=PALETTE_60[1:],
    read_split=_reader(LABEL_MAP_59),
    label_map=LABEL_MAP_59,
    **_COMMON,
)
DATASET_60 = Dataset(
    name="pascal_context_60",
    description="PASCAL Context, 60 classes (background is class 0)",
    class_names=CLASSES_60,
    palette=PALETTE_60,
    read_split=_reader(LABEL_MAP_60),
    label_map=LABEL_MAP_60,
    **_COMMON,
)
