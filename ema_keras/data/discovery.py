"""Finds PASCAL VOC (and SBD next to it) where users keep it.

The order, first found wins:

1. the folder given (`--data_dir`);
2. the environment variable `EMA_KERAS_DATA_DIR`;
3. `data/VOCdevkit` under the current folder (mmsegmentation's layout);
4. the TFDS manual folder, `$TFDS_DATA_DIR/downloads/manual` or
   `~/tensorflow_datasets/downloads/manual`.

A folder the user named (1, 2) must hold VOC; the conventional places (3, 4)
are skipped when they do not. SBD is looked for next to the VOC folder found:
`benchmark_RELEASE/` or mmsegmentation's `VOCaug/` (SBD's `dataset/` inside),
and `SegmentationClassAug/` beside VOC2012 or inside it.

`find_data_root` searches the same places for any dataset of
`ema_keras.data.datasets`: `./data/<its folder>` (mmsegmentation's names:
cityscapes, VOCdevkit for PASCAL Context's VOC2010, coco_stuff164k,
coco_stuff10k) and the TFDS manual folder.
"""

import os
from typing import NamedTuple, Optional

from ema_keras.data.datasets import get_dataset
from ema_keras.data.errors import MissingFileError
from ema_keras.data.voc import find_voc_root

ENV_VAR = "EMA_KERAS_DATA_DIR"
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
SBD_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
WHERE_TO_GET_IT = (
    f"PASCAL VOC 2012's VOCdevkit ({VOC_URL}) and, for the trainaug split, SBD's "
    f"benchmark_RELEASE (Hariharan et al., {SBD_URL}) or a SegmentationClassAug folder"
)


class DataNotFoundError(LookupError):
    """No VOC folder given and none in the conventional places; says what is needed."""


class VOCData(NamedTuple):
    voc_root: str  # the VOC2012 folder (it holds ImageSets/)
    sbd_dir: Optional[str]  # SBD found next to it, else None
    aug_dir: Optional[str]  # SegmentationClassAug found next to it, else None
    found_in: str  # where it was found, in the user's words ("--data_dir", "./data/VOCdevkit")


def tfds_manual_dir(environ=None, home=None):
    environ = os.environ if environ is None else environ
    root = environ.get("TFDS_DATA_DIR") or os.path.join(
        home or os.path.expanduser("~"), "tensorflow_datasets"
    )
    return os.path.join(root, "downloads", "manual")


def conventional_places(environ=None, cwd=None, home=None):
    """(how the user would name it, path) for steps 3 and 4 of the search."""
    return [
        ("./data/VOCdevkit", os.path.join(cwd or os.getcwd(), "data", "VOCdevkit")),
        ("the TFDS manual folder", tfds_manual_dir(environ, home)),
    ]


def _named_voc_root(path, named_by):
    """The VOC2012 folder of a folder the user named; an error naming it and the flag otherwise."""
    if not os.path.isdir(path):
        raise MissingFileError(
            path, f"no such folder; {named_by} takes a VOCdevkit or VOC2012 folder"
        )
    try:
        return find_voc_root(path)
    except MissingFileError as error:
        raise MissingFileError(
            path, f"{error.reason}; {named_by} takes a VOCdevkit or VOC2012 folder"
        ) from None


def find_sbd_next_to(voc_root):
    """(sbd_dir, aug_dir) found beside `voc_root` (see the module docstring), each or None."""
    devkit = os.path.dirname(os.path.abspath(voc_root))
    above = os.path.dirname(devkit)
    sbd_dir = aug_dir = None
    for folder in (devkit, above):
        for name in ("benchmark_RELEASE", "VOCaug"):
            candidate = os.path.join(folder, name)
            if sbd_dir is None and os.path.isdir(candidate):
                sbd_dir = candidate
    for candidate in (
        os.path.join(voc_root, "SegmentationClassAug"),
        os.path.join(devkit, "SegmentationClassAug"),
        os.path.join(above, "SegmentationClassAug"),
    ):
        if aug_dir is None and os.path.isdir(candidate):
            aug_dir = candidate
    return sbd_dir, aug_dir


def find_voc_data(data_dir=None, *, environ=None, cwd=None, home=None):
    """The VOC data to train on, searched in the order of the module docstring; a `VOCData`.

    Raises `MissingFileError` when the folder given (or `$EMA_KERAS_DATA_DIR`)
    holds no VOC, and `DataNotFoundError` when nothing was given and nothing
    is in the conventional places.
    """
    environ = os.environ if environ is None else environ
    if data_dir:
        voc_root, found_in = _named_voc_root(data_dir, "--data_dir"), "--data_dir"
    elif environ.get(ENV_VAR):
        voc_root, found_in = _named_voc_root(environ[ENV_VAR], f"${ENV_VAR}"), f"${ENV_VAR}"
    else:
        places = conventional_places(environ, cwd, home)
        for found_in, path in places:
            try:
                voc_root = find_voc_root(path)
                break
            except MissingFileError:
                continue
        else:
            looked = ", ".join([f"${ENV_VAR}"] + [path for _, path in places])
            raise DataNotFoundError(
                f"no PASCAL VOC data found (looked at {looked}); training needs {WHERE_TO_GET_IT}. "
                "Pass --data_dir (and --sbd_dir or --aug_dir), or --recipe demo to train on the "
                "generated demo set."
            )
    return VOCData(voc_root, *find_sbd_next_to(voc_root), found_in)


def find_data_root(dataset, data_dir=None, *, environ=None, cwd=None, home=None):
    """(root, found_in) of dataset `dataset` (a name), searched as `find_voc_data` does.

    Raises `MissingFileError` naming the folder and its flag when the folder
    given (or `$EMA_KERAS_DATA_DIR`) does not hold the dataset, and
    `DataNotFoundError` saying where to get it when nothing was found.
    """
    spec = get_dataset(dataset)
    environ = os.environ if environ is None else environ
    named = [("--data_dir", data_dir)] if data_dir else []
    named += [(f"${ENV_VAR}", environ[ENV_VAR])] if not data_dir and environ.get(ENV_VAR) else []
    for found_in, path in named:
        try:
            return spec.find_root(path), found_in
        except MissingFileError as error:
            raise MissingFileError(
                path, f"{error.reason}; {found_in} takes a {spec.name} folder"
            ) from None
    places = [
        (f"./data/{spec.folder}", os.path.join(cwd or os.getcwd(), "data", spec.folder)),
        ("the TFDS manual folder", tfds_manual_dir(environ, home)),
    ]
    for found_in, path in places:
        try:
            return spec.find_root(path), found_in
        except MissingFileError:
            continue
    looked = ", ".join([f"${ENV_VAR}"] + [path for _, path in places])
    raise DataNotFoundError(
        f"no {spec.name} data found (looked at {looked}); get {spec.where_to_get} "
        "and pass --data_dir."
    )
