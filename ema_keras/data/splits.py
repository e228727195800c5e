"""Train and validation ids of a dataset of one's own: shipped, recorded by the run, or drawn.

In this order:
1. the splits the data ships (a folder dataset's `splits/train.txt` and
   `splits/val.txt`, CVAT's `ImageSets/Segmentation/<subset>.txt`), by name;
2. the split a run drew before (`splits.json` in its folder): a resumed run,
   and evaluation of that run, use the very same images;
3. a seeded split: `val_fraction` of the ids (at least one) drawn with `seed`,
   written to the run's `splits.json` (`record_split`, once the data passed its
   checks) so that 2 holds from then on.
"""

import json
import os

import numpy as np

from ema_keras.data.errors import DataError

SPLITS_FILE = "splits.json"
TRAIN, VAL = "train", "val"
# What users call the splits, by what they mean.
_ALIASES = {TRAIN: ("train", "trainaug", "training"), VAL: ("val", "validation", "valid")}


def _role(split):
    for role, names in _ALIASES.items():
        if split in names:
            return role
    return None


def _shipped(dataset, split):
    if split in dataset.splits:
        return dataset.splits[split]
    role = _role(split)
    for name in _ALIASES.get(role, ()):
        if name in dataset.splits:
            return dataset.splits[name]
    return None


def split_ids(dataset, split, *, val_fraction=0.1, seed=0, run_dir=None):
    """The image ids of `split` ("train", "val" or a shipped split's name) and where they came from.

    Returns (ids, how), `how` a phrase for the log ("splits/val.txt", "the
    run's splits.json", "a seeded split ...").
    """
    all_ids = [image.image_id for image in dataset.images]
    shipped = _shipped(dataset, split)
    if shipped is not None:
        return tuple(shipped), f"the {split} split the data ships"
    if dataset.splits:
        raise DataError(
            dataset.root,
            f"has the splits {', '.join(sorted(dataset.splits))} and no {split!r}; name one "
            "with --train_split / --val_split (or --splits)",
        )
    role = _role(split)
    if role is None:
        raise DataError(
            dataset.root,
            f"ships no splits: the split {split!r} is unknown (use train and val: a seeded "
            "split, --val_fraction of the images for val)",
        )
    recorded = _read_recorded(run_dir, dataset.root)
    if recorded is None:
        recorded = draw_split(all_ids, val_fraction, seed)
        how = f"a seeded split ({len(recorded[VAL])} of {len(all_ids)} for val, seed {seed})"
    else:
        how = f"the split recorded in {os.path.join(run_dir, SPLITS_FILE)}"
    known = set(all_ids)
    gone = [i for i in recorded[TRAIN] + recorded[VAL] if i not in known]
    if gone:
        raise DataError(
            os.path.join(run_dir, SPLITS_FILE),
            f"this run's split lists {len(gone)} image(s) no longer in {dataset.root}, e.g. "
            f"{gone[0]!r}: restore them, or train into a new --model_dir",
        )
    return tuple(recorded[role]), how


def draw_split(ids, val_fraction, seed):
    """{"train": [...], "val": [...]}: `val_fraction` of `ids` (at least 1) for val, seeded."""
    ids = sorted(ids)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val_fraction must be in (0, 1), got {val_fraction}")
    if len(ids) < 2:
        raise DataError("", f"{len(ids)} image(s): a train and a val split need at least 2")
    count = min(len(ids) - 1, max(1, int(round(val_fraction * len(ids)))))
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:count])
    chosen = set(val)
    return {TRAIN: [i for i in ids if i not in chosen], VAL: val}


def _read_recorded(run_dir, root):
    if run_dir is None:
        return None
    path = os.path.join(run_dir, SPLITS_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise DataError(path, f"is not a readable split record ({error})") from None
    return {TRAIN: list(value[TRAIN]), VAL: list(value[VAL])}


def record_split(run_dir, dataset, *, val_fraction=0.1, seed=0):
    """Writes the seeded split into `run_dir` (once the data passed its checks), if one was drawn.

    Nothing is written when the data ships splits or the run recorded one.
    """
    if dataset.splits or _read_recorded(run_dir, dataset.root) is not None:
        return
    split = draw_split([image.image_id for image in dataset.images], val_fraction, seed)
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, SPLITS_FILE)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(
            {"data_dir": os.path.abspath(dataset.root), "val_fraction": val_fraction, "seed": seed,
             **split},
            handle,
            indent=1,
        )
    os.replace(partial, path)
