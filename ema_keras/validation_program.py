"""`ema-keras-validate`: checks a dataset folder before a long run, every problem at once.

    ema-keras-validate --data_dir /data/VOCdevkit --splits train,val
    ema-keras-validate --dataset cityscapes --data_dir /data/cityscapes
    ema-keras-validate --dataset folder --data_dir mydata         # your own data
    ema-keras-validate --dataset cvat --data_dir export.zip       # labelme, coco too

For the benchmarks it runs `validate.validate_dataset` (see there for what is
refused). For datasets of one's own it reads the data with its reader,
converts what the training graph would convert (into a temporary folder:
nothing is written beside the data) and runs the check before training on
every image, the training split's foreground rule included. Either way it
prints, per split, the pairs and image sizes, then a table of pixels per
class (training split: what `--class_weights` would weigh), naming classes
that have no pixel. Exit 1 when anything is wrong, naming each file.

It lives beside `ema_keras.cli`, the start-up every program shares, and not
in `ema_keras.data`: the data package imports nothing above it (no program,
training or inference).
"""

import sys
import tempfile

from absl import app, flags

from ema_keras import cli
from ema_keras.data import training_data
from ema_keras.data.datasets import get_dataset
from ema_keras.data.errors import DataError, PreflightError
from ema_keras.data.preflight import preflight_check
from ema_keras.data.validate import validate_dataset


def define_flags():
    """The validator's flags (absl, named as the trainer's); defined when it runs, not on import."""
    flags.DEFINE_string(
        "dataset", "voc", "Layout of --data_dir: voc, cityscapes, ...; or your own data: folder, "
        "cvat, labelme, coco."
    )
    flags.DEFINE_string("data_dir", None, "The dataset's folder (VOCdevkit or VOC2012 for voc).")
    flags.DEFINE_list("splits", None, "Splits to check, e.g. train,val,trainaug (default: the "
                      "dataset's own, train,val for voc and your own data).")
    flags.DEFINE_integer(
        "num_classes", None, "Classes; training ids at or above are problems (default: the "
        "dataset's)."
    )
    flags.DEFINE_float("val_fraction", 0.1, "Your own data without split files: the val share.")
    flags.DEFINE_integer("seed", 0, "Your own data without split files: the split's seed.")
    flags.DEFINE_string("sbd_dir", None, "SBD benchmark_RELEASE folder (for trainaug).")
    flags.DEFINE_string("aug_dir", None, "SegmentationClassAug folder (for trainaug).")


def class_pixel_table(class_table, pixel_counts, ignored_pixels):
    """Markdown lines: id, name, pixels, share; "absent" for a class without pixels."""
    total = sum(pixel_counts) + ignored_pixels
    lines = ["| id | class | pixels | share |", "|---:|---|---:|---:|"]
    for class_id, (name, count) in enumerate(zip(class_table.names, pixel_counts)):
        share = f"{100 * count / total:.2f}%" if count else "absent"
        lines.append(f"| {class_id} | {name} | {count} | {share} |")
    lines.append(f"| 255 | (ignored) | {ignored_pixels} | {100 * ignored_pixels / total:.2f}% |")
    return lines


def _validate_own(flag_values, splits):
    """(problems, printed lines) of a dataset of one's own."""
    problems, lines = [], []
    with tempfile.TemporaryDirectory() as cache:
        for split in splits:
            try:
                examples, table = training_data.resolve_split(
                    flag_values.dataset, flag_values.data_dir, split,
                    num_classes=flag_values.num_classes, cache_dir=cache,
                    val_fraction=flag_values.val_fraction, seed=flag_values.seed,
                )
                result = preflight_check(
                    examples, num_classes=table.num_classes, what=f"{split} split",
                    require_foreground=split == splits[0],
                )
            except PreflightError as error:
                problems.extend(error.problems)
                continue
            except DataError as error:
                problems.append(error)
                continue
            lines.append(
                f"{split}: {result.num_examples} pairs, images up to "
                f"{result.max_height}x{result.max_width}, {table.num_classes} classes"
            )
            lines += class_pixel_table(table, result.pixel_counts, result.ignored_pixels)
    return problems, lines


def main(argv):
    """Prints every problem; 1 when there is any (the count on stderr), else 0."""
    FLAGS = flags.FLAGS
    positional = argv[1:]
    if len(positional) > 1 or (positional and FLAGS.data_dir):
        raise app.UsageError(f"give one dataset folder, with --data_dir; got {positional}")
    if FLAGS.data_dir is None and positional:
        FLAGS.data_dir = positional[0]
    if FLAGS.data_dir is None:
        raise app.UsageError(f"--data_dir is required: the {FLAGS.dataset} folder to check")
    if training_data.is_custom(FLAGS.dataset):
        splits = [s for s in (FLAGS.splits or ["train", "val"]) if s]
        problems, lines = _validate_own(FLAGS, splits)
    else:
        try:
            spec = get_dataset(FLAGS.dataset)
        except ValueError:
            names = ", ".join(training_data.dataset_names())
            raise app.UsageError(f"--dataset {FLAGS.dataset!r} is unknown; use one of: {names}.")
        splits = [s for s in (FLAGS.splits or spec.splits) if s]
        if "trainaug" in splits and not (FLAGS.sbd_dir or FLAGS.aug_dir):
            raise app.UsageError(
                "--splits trainaug needs SBD's labels: pass --sbd_dir (benchmark_RELEASE) "
                "or --aug_dir (SegmentationClassAug)"
            )
        summaries = []
        problems = validate_dataset(
            FLAGS.data_dir, splits, FLAGS.num_classes, dataset=spec.name,
            sbd_root=FLAGS.sbd_dir, aug_dir=FLAGS.aug_dir, summaries=summaries,
        )
        lines = [str(summary) for summary in summaries]
    for line in lines:
        print(line)
    for problem in problems:
        print(f"{type(problem).__name__}: {problem}")
    if problems:
        files = len({problem.path for problem in problems})
        print(f"{len(problems)} problem(s) in {files} file(s)", file=sys.stderr)
        return 1
    print(f"OK: {FLAGS.data_dir} splits {', '.join(splits)} have no problem")
    return 0


def console_main():
    """`ema-keras-validate`: the shared program start-up (ema_keras.cli) around `main`."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    console_main()
