"""Segmentation data: readers, the tf.data pipelines, converters, validation, demo set.

Datasets (`datasets.DATASETS`, `--dataset`): PASCAL VOC (`voc`), Cityscapes
(`cityscapes`), PASCAL Context (`pascal_context`, `pascal_context_60`) and
COCO-Stuff (`coco_stuff164k`, `coco_stuff10k`), each described in its own
module by a `dataset_spec.Dataset`: how to list a split's files, its classes,
palette and the label map from stored ids to training ids.

One image's way from disk to a batch: `voc.read_voc_split` (or the SBD and
trainaug readers) lists the files, `decode` turns them into uint8 tensors in the
graph, `pipeline.train_dataset` / `pipeline.eval_dataset` augment, pad, crop and
normalise them. `tfrecords` and `tfds_builder` offer the same examples from
TFRecord shards or `tfds.load`, `validate` checks a dataset folder before a
long run, `preflight` checks any source right before training or evaluation
(the same checks, remembered per file fingerprint), and `demo` draws a small
learnable dataset in the VOC format.
"""

from ema_keras.data.dataset_spec import Dataset, Example
from ema_keras.data.datasets import DATASETS, get_dataset
from ema_keras.data.decode import examples_dataset
from ema_keras.data.demo import write_demo_dataset
from ema_keras.data.errors import (
    CorruptFileError,
    DataError,
    EmptySplitError,
    LabelValueError,
    MissingFileError,
    PreflightError,
    SizeMismatchError,
    UnsupportedModeError,
)
from ema_keras.data.image_io import convert_sbd_to_png, load_image, load_label
from ema_keras.data.pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFICIAL_SCALES,
    eval_dataset,
    normalize_image,
    train_dataset,
)
from ema_keras.data.preflight import PreflightResult, preflight_check, required_pad_size
from ema_keras.data.tfrecords import read_tfrecords, write_tfrecords
from ema_keras.data.validate import validate_dataset
from ema_keras.data.voc import (
    IGNORE_LABEL,
    NUM_CLASSES,
    VOC_CLASSES,
    VOCExample,
    read_aug_split,
    read_sbd_split,
    read_voc_split,
    trainaug_examples,
    voc_colormap,
)

__all__ = [
    "CorruptFileError",
    "DATASETS",
    "DataError",
    "Dataset",
    "EmptySplitError",
    "Example",
    "IGNORE_LABEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LabelValueError",
    "MissingFileError",
    "NUM_CLASSES",
    "OFFICIAL_SCALES",
    "PreflightError",
    "PreflightResult",
    "SizeMismatchError",
    "UnsupportedModeError",
    "VOCExample",
    "VOC_CLASSES",
    "convert_sbd_to_png",
    "eval_dataset",
    "examples_dataset",
    "get_dataset",
    "load_image",
    "load_label",
    "normalize_image",
    "preflight_check",
    "read_aug_split",
    "read_sbd_split",
    "read_tfrecords",
    "read_voc_split",
    "required_pad_size",
    "train_dataset",
    "trainaug_examples",
    "validate_dataset",
    "voc_colormap",
    "write_demo_dataset",
    "write_tfrecords",
]
