"""The one place that decides what a run trains and validates on.

    data = resolve_training_data(config, model_dir)   # trainer
    examples, table = resolve_split(...)              # evaluation, validation

A run names its data with `dataset` and `data_dir` (and the splits); this
module finds the folder, reads it with the dataset's reader, picks the
splits (`splits`), converts what the tf.data graph cannot read as it is
(`converted_masks`; SBD's and COCO-Stuff-10k's `.mat` labels), and checks
every file before step 1 (`preflight`), and returns the examples with the
class table and the checks' per-class pixel counts. The trainer and the
programs ask it once; they know nothing of layouts.

Two families of datasets:
- the benchmarks (`ema_keras.data.datasets`: voc, cityscapes, ...), with
  their own class tables; a VOC-format folder of one's own may hold another
  number of classes (`num_classes`);
- datasets of one's own (`CUSTOM_KINDS`: folder, cvat, labelme, coco), whose
  classes come from the data; `num_classes`, when given, must agree.
Without `data_dir`, the demo set is generated into the run's folder.
"""

import dataclasses
import importlib
import os
from typing import Optional, Tuple, Union

from absl import logging

from ema_keras.data import converted_masks, datasets, demo, splits
from ema_keras.data.class_table import ClassTable
from ema_keras.data.errors import DataError
from ema_keras.data.image_io import convert_sbd_to_png
from ema_keras.data.preflight import PreflightResult, preflight_check

# --dataset names of datasets of one's own -> (module, reader function).
_READERS = {
    "folder": ("ema_keras.data.folder", "read_folder"),
    "cvat": ("ema_keras.data.cvat", "read_cvat"),
    "labelme": ("ema_keras.data.labelme", "read_labelme"),
    "coco": ("ema_keras.data.coco_instances", "read_coco_layout"),
}
CUSTOM_KINDS = tuple(_READERS)
CONVERTED_FOLDER = "converted"
DEMO_FOLDER = "demo_data"


class ClassCountError(DataError):
    """A --num_classes that contradicts the classes the data declares."""


def dataset_names():
    """Every --dataset value: the benchmarks and the kinds of datasets of one's own."""
    return tuple(datasets.DATASETS) + CUSTOM_KINDS


def is_custom(name):
    return name in _READERS


def colour_dataset(name):
    """The benchmark whose colours draw `name`'s ids: itself, or VOC's for your own data.

    A model trained on your own data carries its class table's colours; the
    benchmark's only colour what lies past them (the ignore label 255).
    """
    return "voc" if is_custom(name) else name


def read_annotated(kind, data_dir):
    """The AnnotatedDataset of a dataset of one's own (`kind` in CUSTOM_KINDS) at `data_dir`."""
    module, function = _READERS[kind]
    return getattr(importlib.import_module(module), function)(data_dir)


def class_table_of(name, num_classes=None):
    """The ClassTable of benchmark `name`; generic names for another `num_classes` (own VOC)."""
    spec = datasets.get_dataset(name)
    if num_classes is None or num_classes == spec.num_classes:
        return ClassTable.from_names(spec.class_names, spec.palette)
    return ClassTable.from_names([f"class_{i}" for i in range(num_classes)])


def _checked_count(table, num_classes, where):
    if num_classes is not None and num_classes != table.num_classes:
        raise ClassCountError(
            where,
            f"declares {table.num_classes} classes but --num_classes is {num_classes}; "
            "leave --num_classes out (the data's classes decide)",
        )


@dataclasses.dataclass(frozen=True)
class TrainingData:
    dataset: str
    root: Optional[str]  # None: trained from TFRecords
    class_table: ClassTable
    train: Union[list, str]  # Examples, or a TFRecord glob
    train_check: PreflightResult  # per-class pixel counts included
    val: Optional[list]
    val_check: Optional[PreflightResult]
    left_out: Tuple[Tuple[str, str], ...] = ()

    @property
    def num_classes(self):
        return self.class_table.num_classes


def _custom_split(annotated, split, cache_dir, *, val_fraction, seed, run_dir):
    ids, how = splits.split_ids(
        annotated, split, val_fraction=val_fraction, seed=seed, run_dir=run_dir
    )
    chosen = set(ids)
    subset = dataclasses.replace(
        annotated, images=tuple(i for i in annotated.images if i.image_id in chosen)
    )
    logging.info("%s: %d images from %s.", split, len(subset.images), how)
    return converted_masks.materialize(subset, cache_dir)


def _log_left_out(annotated):
    if annotated.left_out:
        shown = "; ".join(f"{path} ({why})" for path, why in annotated.left_out[:5])
        more = len(annotated.left_out) - 5
        logging.warning(
            "Left out %d file(s) of %s: %s%s", len(annotated.left_out), annotated.root, shown,
            f"; and {more} more" if more > 0 else "",
        )


def resolve_split(
    dataset, data_dir, split, *, num_classes=None, cache_dir, run_dir=None, val_fraction=0.1,
    seed=0, sbd_root=None, aug_dir=None,
):
    """(examples the graph reads, class table) of one split; nothing checked yet.

    `cache_dir` receives conversions (a run's folder, or a temporary one);
    `run_dir` holds a run's recorded seeded split (None: none recorded).
    """
    if is_custom(dataset):
        annotated = read_annotated(dataset, data_dir)
        _checked_count(annotated.class_table, num_classes, annotated.classes_from or data_dir)
        _log_left_out(annotated)
        examples = _custom_split(
            annotated, split, os.path.join(cache_dir, CONVERTED_FOLDER),
            val_fraction=val_fraction, seed=seed, run_dir=run_dir,
        )
        return examples, annotated.class_table
    spec = datasets.get_dataset(dataset)
    root = spec.find_root(data_dir)
    examples = datasets.read_examples(dataset, root, split, sbd_root=sbd_root, aug_dir=aug_dir)
    table = class_table_of(dataset, num_classes)
    if any(example.label_path.endswith(".mat") for example in examples):
        # The tf.data graph decodes no .mat: PNGs of training ids, converted once.
        examples = convert_sbd_to_png(
            examples, os.path.join(cache_dir, "sbd_labels"), num_classes=table.num_classes
        )
    return examples, table


def resolve_training_data(config, model_dir):
    """The checked training (and validation) data of a run; see the module docstring.

    `config` is a `TrainConfig` (its dataset, data_dir, splits, sbd_dir,
    aug_dir, train_tfrecords, num_classes, val_fraction, seed, validate).
    Raises a DataError (or PreflightError) naming the file before any step.
    """
    data_dir = config.data_dir
    if data_dir is None:
        data_dir = demo.write_demo_dataset(os.path.join(model_dir, DEMO_FOLDER))
    annotated = None
    if is_custom(config.dataset):
        annotated = read_annotated(config.dataset, data_dir)
        table = annotated.class_table
        _checked_count(table, config.num_classes, annotated.classes_from or data_dir)
        _log_left_out(annotated)
    else:
        table = class_table_of(config.dataset, config.num_classes)
    options = dict(
        num_classes=table.num_classes, cache_dir=model_dir, run_dir=model_dir,
        val_fraction=getattr(config, "val_fraction", 0.1), seed=config.seed,
        sbd_root=config.sbd_dir, aug_dir=config.aug_dir,
    )
    read = _reader(config.dataset, data_dir, annotated, options)
    train = config.train_tfrecords or read(config.train_split)
    train_check = preflight_check(
        train, num_classes=table.num_classes, cache_dir=model_dir, what="training data",
        require_foreground=True,
    )
    val = val_check = None
    if config.validate:
        val = read(config.val_split)
        val_check = preflight_check(
            val, num_classes=table.num_classes, cache_dir=model_dir, what="validation data"
        )
    if annotated is not None:
        splits.record_split(
            model_dir, annotated, val_fraction=options["val_fraction"], seed=config.seed
        )
    root = None if config.train_tfrecords and annotated is None else data_dir
    return TrainingData(
        config.dataset, root, table, train, train_check, val, val_check,
        annotated.left_out if annotated else (),
    )


def _reader(dataset, data_dir, annotated, options):
    """split -> its examples, converted in the run's folder; the annotated data read once."""
    if annotated is None:
        def read(split):
            return resolve_split(dataset, data_dir, split, **options)[0]

        return read

    def read_custom(split):
        return _custom_split(
            annotated, split, os.path.join(options["cache_dir"], CONVERTED_FOLDER),
            val_fraction=options["val_fraction"], seed=options["seed"],
            run_dir=options["run_dir"],
        )

    return read_custom


def eval_window(dataset):
    """The sliding-window size of a benchmark's published evaluation (None: whole images)."""
    return None if is_custom(dataset) else datasets.get_dataset(dataset).eval_window
