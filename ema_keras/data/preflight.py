"""Checks every example of a training or evaluation source before the first step.

    result = preflight_check(examples, num_classes=21, cache_dir=model_dir, what="training data")

A run should not die at step 20,000 on a truncated JPEG, nor train on a label
that says 30. `preflight_check` decodes every image and label of a source
once, with the checks of `ema-keras-validate` (`validate.check_pair`: files
missing, cut short or corrupt, images that are not 8-bit RGB, grayscale or
CMYK, label ids >= num_classes other than 255 anywhere in the label, image and
label sizes that differ, palette or RGB colours outside the VOC map), and
raises one `PreflightError` naming the files. Sources are those of
`ema_keras.data.decode`: a list of `Example` (each label read through its
dataset's label map), a TFRecord glob written by
`write_tfrecords` (each record's bytes checked) or a `tf.data.Dataset` of
example dicts (iterated once).

A pass is remembered in `cache_dir` under a fingerprint of the files (path,
size and mtime of each, `num_classes`, `CHECKER_VERSION`): a second run on
unchanged files decodes nothing, and any change to a file checks again. A
Dataset has no files to fingerprint and is checked every time.
"""

import collections
import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from ema_keras.data.decode import TFRECORD_FEATURES, list_tfrecord_files
from ema_keras.data.errors import (
    CorruptFileError,
    DataError,
    EmptySplitError,
    LabelValueError,
    PreflightError,
)
from ema_keras.data.validate import PairCheck, check_pair
from ema_keras.data.voc import IGNORE_LABEL

CHECKER_VERSION = 2  # bump whenever a check changes: remembered passes are then redone
CACHE_FILE = "data_check.json"
_CACHE_ENTRIES = 16


@dataclasses.dataclass(frozen=True)
class PreflightResult:
    num_examples: int
    max_height: int  # of the images, e.g. for the evaluation padding
    max_width: int
    # Pixels of each training id 0..num_classes-1 over the source, and of the ignore label.
    pixel_counts: Tuple[int, ...] = ()
    ignored_pixels: int = 0
    from_cache: bool = False

    def absent_classes(self):
        """Training ids with no pixel in the source."""
        return [i for i, count in enumerate(self.pixel_counts) if count == 0]


def required_pad_size(result):
    """(height, width) that padding must reach to hold every image of the checked source."""
    return result.max_height, result.max_width


def _items(source):
    """(image, label, image_name, label_name, image_id, label_map) per example, or a
    DataError; and the files whose stat fingerprints the source (None: it cannot be
    fingerprinted)."""
    if isinstance(source, tf.data.Dataset):
        return _dataset_items(source), None
    if isinstance(source, (str, os.PathLike)):
        files = list_tfrecord_files(source)
        return _tfrecord_items(files), files
    examples = list(source)
    if not examples:
        raise ValueError("examples is empty: nothing to check")
    items = [(e.image_path, e.label_path, None, None, e.image_id, e.label_map) for e in examples]
    return items, [path for e in examples for path in (e.image_path, e.label_path)]


def _record_item(file_name, record):
    try:
        features = tf.train.Example.FromString(record).features.feature
    except Exception as error:  # protobuf's DecodeError, whatever the implementation
        return CorruptFileError(file_name, f"a record is not a tf.train.Example ({error})")
    values = {}
    for key in TFRECORD_FEATURES:
        if key.endswith(("/id", "/encoded")):
            if key not in features or not features[key].bytes_list.value:
                return CorruptFileError(file_name, f"a record has no {key!r} feature")
            values[key] = features[key].bytes_list.value[0]
    image_id = values["image/id"].decode("utf-8", "replace")
    name = f"{file_name} example {image_id}"  # as the graph decoder names it
    image, label = values["image/encoded"], values["label/encoded"]
    return image, label, f"{name} image", f"{name} label", image_id, None


def _tfrecord_items(files):
    for file_name in files:
        count = 0
        try:
            for record in tf.data.TFRecordDataset(file_name).as_numpy_iterator():
                yield _record_item(file_name, record)
                count += 1
        except (tf.errors.OpError, ValueError) as error:  # DataLossError: a shard cut short
            message = " ".join(str(getattr(error, "message", error)).split())
            yield CorruptFileError(file_name, f"unreadable after {count} record(s) ({message})")


def _dataset_items(dataset):
    iterator = dataset.as_numpy_iterator()
    index = 0
    while True:
        try:
            element = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            yield CorruptFileError(f"dataset element {index}", " ".join(error.message.split()))
            return
        if not isinstance(element, dict) or not {"image", "label"} <= set(element):
            raise ValueError(f"dataset elements must be dicts of image and label, got {element}")
        image_id = element.get("image_id", b"")
        image_id = image_id.decode("utf-8", "replace") if isinstance(image_id, bytes) else ""
        name = f"dataset element {index} ({image_id})" if image_id else f"dataset element {index}"
        yield element["image"], element["label"], f"{name} image", f"{name} label", image_id, None
        index += 1


def _in_order(pool, function, items, window):
    """pool.map without reading every item first (TFRecord bytes need not all fit in memory)."""
    pending = collections.deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _fingerprint(files, num_classes, label_maps=()):
    entries = []
    for path in files:
        try:
            stat = os.stat(path)
        except OSError:  # a missing file: the check names it
            return None
        entries.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    maps = sorted(m.hex() for m in set(label_maps) if m is not None)  # a map checks other ids
    payload = json.dumps([CHECKER_VERSION, num_classes, entries] + ([maps] if maps else []))
    payload = payload.encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def _read_cache(cache_dir):
    try:
        with open(os.path.join(cache_dir, CACHE_FILE), encoding="utf-8") as handle:
            passed = json.load(handle)["passed"]
        return passed if isinstance(passed, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _remember_pass(cache_dir, fingerprint, result):
    passed = _read_cache(cache_dir)
    passed.pop(fingerprint, None)
    passed[fingerprint] = {
        "num_examples": result.num_examples,
        "max_height": result.max_height,
        "max_width": result.max_width,
        "pixel_counts": list(result.pixel_counts),
        "ignored_pixels": result.ignored_pixels,
    }
    passed = dict(list(passed.items())[-_CACHE_ENTRIES:])
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, CACHE_FILE)
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump({"version": CHECKER_VERSION, "passed": passed}, handle, indent=1)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _refuse_without_foreground(result, required, first_ignored):
    """`result`, or a PreflightError when only class 0 and the ignore label occur (see below)."""
    foreground = sum(result.pixel_counts[1:])
    if not required or len(result.pixel_counts) < 2 or foreground or not result.ignored_pixels:
        return result
    raise PreflightError(
        [
            LabelValueError(
                first_ignored or "the labels",
                "the labels hold only class 0 and 255, which means ignore: every foreground "
                "pixel would be ignored. If 255 marks a class, declare it in classes.txt "
                "(a line like `foreground =255`) and train with --dataset folder",
            )
        ],
        "training data",
    )


def preflight_check(
    source, *, num_classes, cache_dir=None, what="data", num_workers=None,
    require_foreground=False,
):
    """Checks every example of `source`; raises PreflightError naming the bad files.

    Args:
      source: a list of VOCExample, a TFRecord glob pattern, or a
        `tf.data.Dataset` of dicts of image and label (bytes or decoded).
      num_classes: label ids must be below it, or 255.
      cache_dir: a folder (e.g. the run's model_dir) where a pass is
        remembered by the files' fingerprint; None checks every time.
      what: how the message calls the source ("training data", ...).
      num_workers: decoding threads (default: up to 8).
      require_foreground: refuse a source whose labels hold class 0 and the
        ignore label only (training data): a binary mask of 0 and 255 would
        otherwise train with its foreground silently ignored.

    Returns:
      A PreflightResult: the number of examples, the largest image size and
      the pixels of each class.
    """
    items, files = _items(source)
    label_maps = [item[-1] for item in items] if isinstance(items, list) else ()
    fingerprint = _fingerprint(files, num_classes, label_maps) if cache_dir and files else None
    if fingerprint is not None:
        remembered = _read_cache(cache_dir).get(fingerprint)
        if isinstance(remembered, dict):
            try:
                remembered["pixel_counts"] = tuple(remembered["pixel_counts"])
                return _refuse_without_foreground(
                    PreflightResult(**remembered, from_cache=True), require_foreground, None
                )
            except (TypeError, KeyError):
                pass  # an entry of another layout: check again

    def check(item):
        if isinstance(item, DataError):
            return PairCheck([item], None), None
        image, label, image_name, label_name, image_id, label_map = item
        return check_pair(
            image,
            label,
            num_classes,
            image_name=image_name,
            label_name=label_name,
            image_id=image_id,
            label_map=label_map,
        ), label_name or str(label)

    start = time.monotonic()
    problems, count, max_height, max_width = [], 0, 0, 0
    counts, first_ignored = np.zeros(256, np.int64), None
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for found, label_name in _in_order(pool, check, items, window=4 * workers):
            count += 1
            problems.extend(found.problems)
            if found.label_counts is not None:
                counts += found.label_counts
                if first_ignored is None and found.label_counts[IGNORE_LABEL]:
                    first_ignored = label_name
            if found.image_size is not None:
                max_height = max(max_height, found.image_size[0])
                max_width = max(max_width, found.image_size[1])
    if not count and not problems:
        problems.append(EmptySplitError(str(source), "no example to check"))
    if problems:
        raise PreflightError(problems, what)
    result = PreflightResult(
        count, max_height, max_width, tuple(int(c) for c in counts[:num_classes]),
        int(counts[IGNORE_LABEL]),
    )
    _refuse_without_foreground(result, require_foreground, first_ignored)
    seconds = time.monotonic() - start
    logging.info("Checked the %d examples of the %s in %.1f s: no problem.", count, what, seconds)
    if fingerprint is not None:
        _remember_pass(cache_dir, fingerprint, result)
    return result
