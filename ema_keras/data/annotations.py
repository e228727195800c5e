"""Datasets of one's own as their readers find them, before anything is converted.

Every reader of a user's data (`folder`, `cvat`, `labelme`, `coco_instances`;
in-memory sources such as Hugging Face datasets are written as a folder first,
`folder_writer`) returns an `AnnotatedDataset`: the class table, one
`AnnotatedImage` per usable image, the splits the data ships (if any), and the
images left out with the reason. `converted_masks.materialize` then turns it
into the `Example`s every consumer reads (the tf.data decoder, the checks
before a run, the validator, TFRecords): a mask that is not already an 8-bit
PNG of training ids is rendered once into the run's cache, with a record of
its sources, and redone when a source changes.

A reader only lists and describes; it writes nothing.
"""

import dataclasses
from typing import Callable, Mapping, Optional, Tuple, Union

import numpy as np

from ema_keras.data.class_table import ClassTable


@dataclasses.dataclass(frozen=True)
class AnnotatedImage:
    """One image and how to get its mask of training ids.

    image_id: the image's relative path without extension, `/`-separated
        (what split files list).
    image: the image file's path, or its encoded bytes (LabelMe's `imageData`).
    sources: the files the mask is made from (a mask PNG, an annotation JSON):
        their path, size and mtime key the converted mask in the cache.
    render: (height, width) of the image as displayed (EXIF orientation
        applied) -> (H, W) uint8 training ids, 255 = ignore; raises a
        `DataError` naming the file for a bad value. None when `mask_path`
        already holds training ids.
    mask_path: an 8-bit index PNG of training ids used as it is (no render).
    converter: names the rendering rules (e.g. "labelme-1"); a new value
        redoes every cached mask of that reader.
    """

    image_id: str
    image: Union[str, bytes]
    sources: Tuple[str, ...]
    render: Optional[Callable[[Tuple[int, int]], np.ndarray]] = None
    mask_path: Optional[str] = None
    converter: str = ""


@dataclasses.dataclass(frozen=True)
class AnnotatedDataset:
    """What a reader found (see the module docstring)."""

    kind: str  # "folder", "cvat", "labelme", "coco"
    root: str
    class_table: ClassTable
    images: Tuple[AnnotatedImage, ...]
    # Split name -> image ids, as the data ships them (empty: a seeded split is made).
    splits: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # (path, why) of every image not used: no mask, no annotation, ...
    left_out: Tuple[Tuple[str, str], ...] = ()
    # Where the class table came from, said in logs and the run ("classes.txt", ...).
    classes_from: str = ""
