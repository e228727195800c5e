"""What the data path needs to know of a dataset, in one small record per dataset.

Each dataset module (`voc`, `cityscapes`, `pascal_context`, `coco_stuff`) ends
with a `Dataset`: its class names and palette, how to find its folder and list
the (image, label) pairs of a split as the dataset ships them, and the
`label_map` that turns the ids stored in its label files into training ids
(a 256-entry table, data rather than code). Readers attach that table to every
`Example` they list, so that every consumer of examples (the tf.data decoder,
the checks before a run, the validator, TFRecords, TFDS) maps labels the same
way without knowing which dataset they came from. A fifth dataset is one more
module with its table and its `Dataset`, named in `ema_keras.data.datasets`.

This module imports no dataset (they import it); the ignore label's home is
`ema_keras.data.voc`, and callers pass it in.
"""

import dataclasses
import os
from typing import Callable, NamedTuple, Optional, Tuple

import numpy as np

from ema_keras.data.errors import EmptySplitError, MissingFileError

LABEL_MAP_SIZE = 256  # labels are 8-bit: one entry per stored value


class Example(NamedTuple):
    image_id: str
    image_path: str
    label_path: str
    # Stored id -> training id, LABEL_MAP_SIZE bytes; None: the file holds training ids.
    label_map: Optional[bytes] = None


def label_map_from_pairs(pairs, ignore_label):
    """A label map: `(stored id, training id)` pairs, every other stored value -> ignore.

    A stored id of -1 (Cityscapes' licence plate) is the byte 255 in an 8-bit
    label, which is where it lands.
    """
    table = np.full(LABEL_MAP_SIZE, ignore_label, np.uint8)
    for stored, train in pairs:
        table[stored % LABEL_MAP_SIZE] = ignore_label if train < 0 else train
    return table.tobytes()


def label_map_array(label_map):
    """The (256,) uint8 lookup table of a label map."""
    return np.frombuffer(label_map, np.uint8)


def apply_label_map(label, label_map):
    """(H, W) stored ids -> training ids; unchanged when `label_map` is None."""
    if label_map is None:
        return label
    return label_map_array(label_map)[np.asarray(label, dtype=np.uint8)]


def shared_label_map(examples):
    """The one label map of `examples` (None if they hold training ids); refuses a mixture."""
    maps = {getattr(example, "label_map", None) for example in examples}
    if len(maps) > 1:
        raise ValueError(
            "examples of one source come from datasets with different label maps; "
            "read each dataset on its own"
        )
    return maps.pop() if maps else None


def checked_examples(where, examples, check_files=True):
    """`examples`, or a MissingFileError naming `where` and the first missing files."""
    if not examples:
        raise EmptySplitError(where, "this split has no image")
    if not check_files:
        return examples
    missing = [
        path
        for example in examples
        for path in (example.image_path, example.label_path)
        if not os.path.isfile(path)
    ]
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise MissingFileError(
            where, f"{len(missing)} file(s) of this split are missing: {shown}"
        )
    return examples


def paired_files(image_dir, image_suffix, label_dir, label_suffix):
    """(image_id, image path, label path) of every `*image_suffix` under `image_dir`, sorted.

    The label has the same relative folder and stem under `label_dir`, with
    `label_suffix` (Cityscapes' `<city>/<stem>_leftImg8bit.png` ->
    `<city>/<stem>_gtFine_labelIds.png`); the id is the stem.
    """
    if not os.path.isdir(image_dir):
        raise MissingFileError(image_dir, "image folder of this split does not exist")
    pairs = []
    for folder, _, names in os.walk(image_dir):
        relative = os.path.relpath(folder, image_dir)
        for name in names:
            if name.endswith(image_suffix):
                stem = name[: -len(image_suffix)]
                label = os.path.normpath(os.path.join(label_dir, relative, stem + label_suffix))
                pairs.append((stem, os.path.join(folder, name), label))
    return sorted(pairs)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset as the data path sees it (see the module docstring)."""

    name: str
    description: str
    class_names: Tuple[str, ...]
    palette: Tuple[Tuple[int, int, int], ...]  # colour of each training id
    # (path) -> the dataset's root folder; MissingFileError naming the path otherwise.
    find_root: Callable[[str], str]
    # (root, split, *, check_files=True, **extra) -> list of Example.
    read_split: Callable[..., list]
    splits: Tuple[str, ...]  # the splits it ships (ema-keras-validate's default)
    label_map: Optional[bytes] = None  # what its readers attach to every Example
    ignore_colour: Tuple[int, int, int] = (0, 0, 0)
    # () -> (256, 3) uint8, when the dataset colours every value (VOC's bit-spread map).
    full_colormap: Optional[Callable[[], np.ndarray]] = None
    where_to_get: str = ""
    folder: str = ""  # its usual name under ./data/ (mmsegmentation's layout)
    # Sliding-window size of its published evaluation (None: whole images).
    eval_window: Optional[int] = None

    @property
    def num_classes(self):
        return len(self.class_names)

    def colormap(self):
        """(256, 3) uint8: the palette for training ids, `ignore_colour` for every other value."""
        if self.full_colormap is not None:
            return self.full_colormap()
        colormap = np.tile(np.asarray(self.ignore_colour, np.uint8), (LABEL_MAP_SIZE, 1))
        colormap[: self.num_classes] = np.asarray(self.palette, np.uint8)
        return colormap
