"""The datasets the data path reads, by name (`--dataset`).

Each is a `dataset_spec.Dataset` declared at the end of its own module; a new
dataset is a new module and one more entry in `_ALL`.
"""

from ema_keras.data import cityscapes, coco_stuff, pascal_context, voc

_ALL = (
    voc.DATASET,
    cityscapes.DATASET,
    pascal_context.DATASET,
    pascal_context.DATASET_60,
    coco_stuff.DATASET_164K,
    coco_stuff.DATASET_10K,
)
DATASETS = {dataset.name: dataset for dataset in _ALL}


def get_dataset(name):
    """The Dataset called `name`; a ValueError naming --dataset and the known names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"--dataset {name!r} is unknown; use one of: {', '.join(DATASETS)}.")
    return DATASETS[name]


def read_examples(name, root, split, *, check_files=True, sbd_root=None, aug_dir=None):
    """The examples of `split` of dataset `name` under `root` (VOC's trainaug takes SBD)."""
    return get_dataset(name).read_split(
        root, split, check_files=check_files, sbd_root=sbd_root, aug_dir=aug_dir
    )
