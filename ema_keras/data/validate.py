"""Checks a VOC dataset folder before a long run and reports every problem at once.

    ema-keras-validate --data_dir /data/VOCdevkit/VOC2012 --splits train,val
    ema-keras-validate --data_dir /data/VOCdevkit --splits trainaug \\
        --aug_dir /data/SegmentationClassAug

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
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional, Tuple

from absl import app, flags

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


def define_flags():
    """The validator's flags (absl, named as the trainer's); defined when it runs, not on import."""
    flags.DEFINE_string("data_dir", None, "VOCdevkit or VOC2012 folder to check.")
    flags.DEFINE_list("splits", ["train", "val"], "Splits to check, e.g. train,val,trainaug.")
    flags.DEFINE_integer("num_classes", NUM_CLASSES, "Classes; label ids at or above are problems.")
    flags.DEFINE_string("sbd_dir", None, "SBD benchmark_RELEASE folder (for trainaug).")
    flags.DEFINE_string("aug_dir", None, "SegmentationClassAug folder (for trainaug).")


def main(argv):
    """Prints every problem; 1 when there is any (the count on stderr), else 0."""
    FLAGS = flags.FLAGS
    positional = argv[1:]
    if len(positional) > 1 or (positional and FLAGS.data_dir):
        raise app.UsageError(f"give one VOC folder, with --data_dir; got {positional}")
    voc_root = FLAGS.data_dir or (positional[0] if positional else None)
    if voc_root is None:
        raise app.UsageError("--data_dir is required: the VOCdevkit or VOC2012 folder to check")
    splits = [s for s in FLAGS.splits if s]
    if "trainaug" in splits and not (FLAGS.sbd_dir or FLAGS.aug_dir):
        raise app.UsageError(
            "--splits trainaug needs SBD's labels: pass --sbd_dir (benchmark_RELEASE) "
            "or --aug_dir (SegmentationClassAug)"
        )
    problems = validate_dataset(
        voc_root, splits, FLAGS.num_classes, sbd_root=FLAGS.sbd_dir, aug_dir=FLAGS.aug_dir
    )
    for problem in problems:
        print(f"{type(problem).__name__}: {problem}")
    if problems:
        files = len({problem.path for problem in problems})
        print(f"{len(problems)} problem(s) in {files} file(s)", file=sys.stderr)
        return 1
    print(f"OK: {voc_root} splits {', '.join(splits)} have no problem")
    return 0


def console_main():
    """`ema-keras-validate`: the shared program start-up (ema_keras.cli) around `main`."""
    from ema_keras import cli  # imports the training settings, which import this package

    define_flags()
    cli.run(main)


if __name__ == "__main__":
    console_main()
