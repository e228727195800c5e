"""COCO-Stuff, 164k (PNG maps) and 10k (.mat files), both read as its 171 classes.

COCO-Stuff-164k, as mmsegmentation lays it out:

    <root>/images/{train2017,val2017}/<id>.jpg
    <root>/annotations/{train2017,val2017}/<id>.png             stuffthingmaps: 0..181, 255
    (or <id>_labelTrainIds.png, mmsegmentation's converted maps: 0..170, 255)

`stuffthingmaps_trainval2017.zip` unpacked beside `images/` (its folder
`stuffthingmaps_trainval2017/{train2017,val2017}`) is found as well. The
stuffthingmaps hold 0-based COCO ids: 0..90 things, 91..181 stuff, 255
unlabeled; 11 thing ids are never used, which leaves 171 classes, numbered in
order (`USED_IDS`, the same table as mmsegmentation's converter).

COCO-Stuff-10k v1.1, as its zip unpacks:

    <root>/images/<id>.jpg
    <root>/annotations/<id>.mat                 key 'S': 1-based ids, 0 unlabeled
    <root>/imageLists/{train,test}.txt          9,000 / 1,000 ids

.mat labels need scipy (an optional dependency) and cannot be decoded in the
tf.data graph: convert them once with `write_tfrecords` or
`image_io.convert_sbd_to_png` (which takes any .mat label).
"""

import os

from ema_keras.data.dataset_spec import (
    Dataset,
    Example,
    checked_examples,
    label_map_from_pairs,
    paired_files,
)
from ema_keras.data.errors import MissingFileError
from ema_keras.data.voc import IGNORE_LABEL, read_id_list, voc_colormap

URL = "https://github.com/nightrome/cocostuff"
STORED_IDS = 182  # 0..181 in the stuffthingmaps
UNUSED_THING_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)  # 0-based, never annotated
USED_IDS = tuple(i for i in range(STORED_IDS) if i not in UNUSED_THING_IDS)
CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush", "banner", "blanket", "branch", "bridge", "building-other", "bush",
    "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth",
    "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff",
    "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel",
    "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff",
    "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other",
    "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock",
    "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent",
    "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete",
    "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip
assert len(CLASSES) == len(USED_IDS) == 171
# stuffthingmaps (0-based) -> training ids; 10k's .mat (1-based, 0 unlabeled) likewise.
LABEL_MAP_164K = label_map_from_pairs(
    ((stored, train) for train, stored in enumerate(USED_IDS)), IGNORE_LABEL
)
LABEL_MAP_10K = label_map_from_pairs(
    ((stored + 1, train) for train, stored in enumerate(USED_IDS)), IGNORE_LABEL
)
# The release has no palette for training ids: the VOC colour map gives each its own.
PALETTE = tuple(tuple(int(c) for c in colour) for colour in voc_colormap()[1:172])
SPLITS_164K = ("train2017", "val2017")
TRAIN_IDS_SUFFIX = "_labelTrainIds.png"


def find_164k_root(path):
    """The folder holding images/train2017 or images/val2017: `path` or its coco_stuff164k/."""
    path = os.fspath(path)
    for candidate in (path, os.path.join(path, "coco_stuff164k")):
        if any(os.path.isdir(os.path.join(candidate, "images", s)) for s in SPLITS_164K):
            return candidate
    raise MissingFileError(path, "no COCO-Stuff-164k folder here (expected images/val2017/)")


def read_164k_split(root, split, *, check_files=True, **unused):
    """A split ('train2017', 'val2017'): mmsegmentation's train-id maps when the folder has
    them, else the stuffthingmaps (mapped with LABEL_MAP_164K)."""
    root = find_164k_root(root)
    image_dir = os.path.join(root, "images", split)
    label_dir = os.path.join(root, "annotations", split)
    if not os.path.isdir(label_dir):
        label_dir = os.path.join(root, "stuffthingmaps_trainval2017", split)
    converted = os.path.isdir(label_dir) and any(
        name.endswith(TRAIN_IDS_SUFFIX) for name in os.listdir(label_dir)
    )
    suffix, label_map = (TRAIN_IDS_SUFFIX, None) if converted else (".png", LABEL_MAP_164K)
    pairs = paired_files(image_dir, ".jpg", label_dir, suffix)
    examples = [Example(i, image, label, label_map) for i, image, label in pairs]
    return checked_examples(image_dir, examples, check_files)


def find_10k_root(path):
    """The folder holding imageLists/ and annotations/: `path` or its cocostuff-10k-v1.1/."""
    path = os.fspath(path)
    for candidate in (path, os.path.join(path, "cocostuff-10k-v1.1")):
        if os.path.isdir(os.path.join(candidate, "imageLists")):
            return candidate
    raise MissingFileError(path, "no COCO-Stuff-10k folder here (expected imageLists/ in it)")


def read_10k_split(root, split, *, check_files=True, **unused):
    """A split ('train', 'test') of imageLists/<split>.txt, labels as annotations/<id>.mat."""
    root = find_10k_root(root)
    list_path = os.path.join(root, "imageLists", f"{split}.txt")
    examples = [
        Example(
            image_id,
            os.path.join(root, "images", f"{image_id}.jpg"),
            os.path.join(root, "annotations", f"{image_id}.mat"),
            LABEL_MAP_10K,
        )
        for image_id in read_id_list(list_path)
    ]
    return checked_examples(list_path, examples, check_files)


_COMMON = dict(class_names=CLASSES, palette=PALETTE)
DATASET_164K = Dataset(
    name="coco_stuff164k",
    description="COCO-Stuff-164k: 171 thing and stuff classes (stuffthingmaps PNGs)",
    folder="coco_stuff164k",
    find_root=find_164k_root,
    read_split=read_164k_split,
    splits=SPLITS_164K,
    label_map=LABEL_MAP_164K,
    where_to_get=f"train2017.zip, val2017.zip (COCO) and stuffthingmaps_trainval2017.zip ({URL})",
    **_COMMON,
)
DATASET_10K = Dataset(
    name="coco_stuff10k",
    description="COCO-Stuff-10k v1.1: 171 classes, labels in .mat files",
    folder="coco_stuff10k",
    find_root=find_10k_root,
    read_split=read_10k_split,
    splits=("train", "test"),
    label_map=LABEL_MAP_10K,
    where_to_get=f"cocostuff-10k-v1.1.zip ({URL})",
    **_COMMON,
)
