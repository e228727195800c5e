"""Checks a dataset folder before a long run and reports every problem at once.

    ema-keras-validate --data_dir /data/VOCdevkit/VOC2012 --splits train,val
    ema-keras-validate --dataset folder --data_dir mydata       # your own data
    ema-keras-validate --data_dir /data/VOCdevkit --splits trainaug \\
        --aug_dir /data/SegmentationClassAug
    ema-keras-validate --dataset cityscapes --data_dir /data/cityscapes

`--dataset` names any dataset of `ema_keras.data.datasets` (default voc); its
splits, label map and number of classes are the defaults. When all is well
it prints, per split, the number of pairs, the range of image sizes and the
training ids the labels hold (after the dataset's label map).

Each problem is a `DataError` naming its file: a split file missing or empty, a
listed image or label missing, an image or label that does not decode, an
image mode that is neither RGB nor convertible (grayscale and CMYK are
converted; alpha, palette, 16-bit images are rejected), a label of another
size than its image, class ids >= num_classes other than 255, a palette PNG
whose palette is not VOC's (the graph decoder reads colours, so it would see
other ids than the file's indices), a file the tf.data decoder would refuse
(not JPEG/PNG, a PNG of other than 8 bits, a file cut short).

`check_pair` is the one check of an example: the pre-training check
(`ema_keras.data.preflight`) runs it too, on files, TFRecord bytes or decoded
arrays, so that the two refuse the same files.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from ema_keras.data.datasets import get_dataset
from ema_keras.data.errors import DataError, MissingFileError, SizeMismatchError
from ema_keras.data.image_io import load_image, load_label
from ema_keras.data.voc import NUM_CLASSES


class PairCheck(NamedTuple):
    problems: List[DataError]  # empty when the pair is fine
    image_size: Optional[Tuple[int, int]]  # (height, width) when the image decodes
    label_ids: Tuple[int, ...] = ()  # the training ids in the label, when it decodes
    label_counts: Optional[np.ndarray] = None  # (256,) pixels of each training id, when it decodes


def check_pair(
    image,
    label,
    num_classes=NUM_CLASSES,
    *,
    image_name=None,
    label_name=None,
    image_id=None,
    label_map=None,
):
    """The problems of one image and its label, each a path, the file's bytes or an array.

    `image_name` / `label_name` name bytes and arrays in the errors (paths name
    themselves). Both files are decoded whole with the `strict` rules of
    `image_io`, which the tf.data decoder applies too, and every label id is
    checked (after `label_map`, the dataset's table of stored -> training
    ids); a palette PNG must carry VOC's colours.
    """
    problems = []
    for source, name in ((image, image_name), (label, label_name)):
        if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
            problems.append(
                MissingFileError(name or source, f"listed for image id {image_id!r} but missing")
            )
    if problems:
        return PairCheck(problems, None)
    image_array = label_array = None
    try:
        image_array = load_image(image, name=image_name, strict=True)
    except DataError as error:
        problems.append(error)
    try:
        label_array = load_label(
            label, num_classes, name=label_name, strict=True, label_map=label_map
        )
    except DataError as error:
        problems.append(error)
    size = None if image_array is None else tuple(int(n) for n in image_array.shape[:2])
    if size is not None and label_array is not None and size != label_array.shape:
        problems.append(
            SizeMismatchError(
                label_name or label,
                f"label is {label_array.shape[0]}x{label_array.shape[1]} but image "
                f"{image_name or image} is {size[0]}x{size[1]}",
            )
        )
    if label_array is None:
        return PairCheck(problems, size)
    counts = np.bincount(label_array.ravel(), minlength=256)
    return PairCheck(problems, size, tuple(int(i) for i in np.flatnonzero(counts)), counts)


def check_example(example, num_classes=NUM_CLASSES):
    """The problems of one Example's files (an empty list when it is fine)."""
    return _check(example, num_classes).problems


def _check(example, num_classes):
    return check_pair(
        example.image_path,
        example.label_path,
        num_classes,
        image_id=example.image_id,
        label_map=example.label_map,
    )


class SplitSummary(NamedTuple):
    split: str
    num_pairs: int
    min_size: Optional[Tuple[int, int]]  # smallest (height, width) by area, None if none decoded
    max_size: Optional[Tuple[int, int]]
    label_ids: Tuple[int, ...]  # every training id found (255 included when present)

    def __str__(self):
        sizes = "no image decoded"
        if self.min_size is not None:
            low, high = ("x".join(map(str, s)) for s in (self.min_size, self.max_size))
            sizes = f"images {low}" if low == high else f"images {low} to {high}"
        ids = [i for i in self.label_ids if i != 255]
        shown = f"ids {ids[0]}..{ids[-1]} ({len(ids)} distinct)" if ids else "no class id"
        return (
            f"{self.split}: {self.num_pairs} pairs, {sizes}, {shown}"
            + (", 255 (ignored)" if 255 in self.label_ids else "")
        )


def validate_dataset(
    root,
    splits=None,
    num_classes=None,
    *,
    dataset="voc",
    sbd_root=None,
    aug_dir=None,
    num_workers=None,
    summaries=None,
):
    """Every problem of the listed splits, as a list of DataError (empty when all is well).

    `dataset` names the layout (`ema_keras.data.datasets`); `splits` default
    to the ones it ships and `num_classes` to its classes. VOC's "trainaug"
    also needs `sbd_root` or `aug_dir`. Each distinct file is decoded once,
    on `num_workers` threads. A list given as `summaries` receives a
    `SplitSummary` per split that could be listed.
    """
    spec = get_dataset(dataset)
    splits = spec.splits if splits is None else splits
    num_classes = spec.num_classes if num_classes is None else num_classes
    problems = []
    try:
        root = spec.find_root(root)
    except DataError as error:
        return [error]
    examples, split_keys = {}, {}
    for split in splits:
        try:
            listed = spec.read_split(
                root, split, check_files=False, sbd_root=sbd_root, aug_dir=aug_dir
            )
        except DataError as error:
            problems.append(error)
            continue
        split_keys[split] = [(e.image_path, e.label_path) for e in listed]
        for example in listed:
            examples.setdefault((example.image_path, example.label_path), example)
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = dict(
            zip(examples, pool.map(lambda e: _check(e, num_classes), examples.values()))
        )
    for found in checks.values():
        problems.extend(found.problems)
    if summaries is not None:
        for split, keys in split_keys.items():
            summaries.append(_summary(split, [checks[key] for key in keys]))
    return problems


def _summary(split, checks):
    sizes = sorted((s[0] * s[1], s) for s in (c.image_size for c in checks) if s is not None)
    ids = sorted({i for c in checks for i in c.label_ids})
    return SplitSummary(
        split,
        len(checks),
        sizes[0][1] if sizes else None,
        sizes[-1][1] if sizes else None,
        tuple(ids),
    )
