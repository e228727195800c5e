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
learnable dataset in the VOC format. `folder_writer` writes examples held in
memory (a list, a generator, a `tf.data.Dataset`) as a folder dataset, and
`huggingface` a Hugging Face `datasets.Dataset` or `DatasetDict`.

The names below load on first use (PEP 562): the TensorFlow-free modules (the
dataset descriptions, `voc`'s constants, the class tables and readers of
one's own data) import on JAX and PyTorch without starting TensorFlow.
"""

from ema_keras.lazy_exports import lazy_exports

# Public name -> the module of this package that defines it.
_EXPORTS = {
    "CorruptFileError": "errors",
    "DATASETS": "datasets",
    "DataError": "errors",
    "Dataset": "dataset_spec",
    "EmptySplitError": "errors",
    "Example": "dataset_spec",
    "IGNORE_LABEL": "voc",
    "IMAGENET_MEAN": "pipeline",
    "IMAGENET_STD": "pipeline",
    "LabelValueError": "errors",
    "MissingFileError": "errors",
    "NUM_CLASSES": "voc",
    "OFFICIAL_SCALES": "pipeline",
    "PreflightError": "errors",
    "PreflightResult": "preflight",
    "SizeMismatchError": "errors",
    "UnsupportedModeError": "errors",
    "VOCExample": "voc",
    "VOC_CLASSES": "voc",
    "convert_sbd_to_png": "image_io",
    "eval_dataset": "pipeline",
    "examples_dataset": "decode",
    "get_dataset": "datasets",
    "load_image": "image_io",
    "load_label": "image_io",
    "normalize_image": "pipeline",
    "preflight_check": "preflight",
    "read_aug_split": "voc",
    "read_sbd_split": "voc",
    "read_tfrecords": "tfrecords",
    "read_voc_split": "voc",
    "required_pad_size": "preflight",
    "train_dataset": "pipeline",
    "trainaug_examples": "voc",
    "validate_dataset": "validate",
    "voc_colormap": "voc",
    "write_demo_dataset": "demo",
    "write_folder_dataset": "folder_writer",
    "write_huggingface_dataset": "huggingface",
    "write_tfrecords": "tfrecords",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
