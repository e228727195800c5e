"""Checks a VOC dataset folder before a long run and reports every problem at once.

    ema-keras-validate /data/VOCdevkit/VOC2012 --splits train,val
    ema-keras-validate /data/VOCdevkit --splits trainaug --aug-dir /data/SegmentationClassAug

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

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional, Tuple

from ema_keras.data.errors import DataError, MissingFileError, SizeMismatchError
from ema_keras.data.image_io import load_image, load_label
from ema_keras.data.voc import NUM_CLASSES, find_voc_root, read_voc_split, trainaug_examples


class PairCheck(NamedTuple):
    problems: List[DataError]  # empty when the pair is fine
    image_size: Optional[Tuple[int, int]]  # (height, width) when the image decodes


def check_pair(
    image, label, num_classes=NUM_CLASSES, *, image_name=None, label_name=None, image_id=None
):
    """The problems of one image and its label, each a path, the file's bytes or an array.

    `image_name` / `label_name` name bytes and arrays in the errors (paths name
    themselves). Both files are decoded whole with the `strict` rules of
    `image_io`, which the tf.data decoder applies too, and every label id is
    checked; a palette PNG must carry VOC's colours.
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
        label_array = load_label(label, num_classes, name=label_name, strict=True)
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
    return PairCheck(problems, size)


def check_example(example, num_classes=NUM_CLASSES):
    """The problems of one VOCExample's files (an empty list when it is fine)."""
    return check_pair(
        example.image_path, example.label_path, num_classes, image_id=example.image_id
    ).problems


def _split_examples(voc_root, split, sbd_root, aug_dir):
    if split == "trainaug":
        return trainaug_examples(voc_root, sbd_root=sbd_root, aug_dir=aug_dir, check_files=False)
    return read_voc_split(voc_root, split, check_files=False)


def validate_dataset(
    voc_root,
    splits=("train", "val"),
    num_classes=NUM_CLASSES,
    *,
    sbd_root=None,
    aug_dir=None,
    num_workers=None,
):
    """Every problem of the listed splits, as a list of DataError (empty when all is well).

    `splits` are VOC split names; "trainaug" also needs `sbd_root` or
    `aug_dir`. Each distinct file is decoded once, on `num_workers` threads.
    """
    problems = []
    try:
        voc_root = find_voc_root(voc_root)
    except DataError as error:
        return [error]
    examples = {}
    for split in splits:
        try:
            for example in _split_examples(voc_root, split, sbd_root, aug_dir):
                examples.setdefault((example.image_path, example.label_path), example)
        except DataError as error:
            problems.append(error)
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for found in pool.map(lambda e: check_example(e, num_classes), examples.values()):
            problems.extend(found)
    return problems


def console_main(argv=None):
    """`ema-keras-validate`: prints every problem, exits 1 when there is any."""
    parser = argparse.ArgumentParser(prog="ema-keras-validate", description=__doc__.splitlines()[0])
    parser.add_argument("voc_root", help="VOCdevkit/VOC2012 (or VOCdevkit) folder")
    parser.add_argument(
        "--splits", default="train,val", help="comma-separated split names (default: train,val)"
    )
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES)
    parser.add_argument(
        "--sbd-root", default=None, help="SBD benchmark_RELEASE folder (for trainaug)"
    )
    parser.add_argument(
        "--aug-dir", default=None, help="SegmentationClassAug folder (for trainaug)"
    )
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    problems = validate_dataset(
        args.voc_root, splits, args.num_classes, sbd_root=args.sbd_root, aug_dir=args.aug_dir
    )
    for problem in problems:
        print(f"{type(problem).__name__}: {problem}")
    if problems:
        files = len({problem.path for problem in problems})
        print(f"{len(problems)} problem(s) in {files} file(s)", file=sys.stderr)
        return 1
    print(f"OK: {args.voc_root} splits {', '.join(splits)} have no problem")
    return 0


if __name__ == "__main__":
    sys.exit(console_main())
