"""A Hugging Face `datasets.Dataset` or `DatasetDict` written as a folder dataset.

    ds = datasets.load_dataset("segments/sidewalk-semantic")
    write_huggingface_dataset(ds, "sidewalk", id2label=id2label)
    # then: ema-keras-validate --dataset folder --data_dir sidewalk

The splits of a `DatasetDict` become `splits/<name>.txt` ("validation" is
written as "val", the name the programs read by default); a single split
writes none (runs draw a seeded val split). The image and mask columns are
the dataset's `datasets.Image` columns, found by name when not given: the mask
is the one named like label, annotation, mask, seg... or gt, the image the
other one (image, img, pixel_values...); two candidates are refused, naming
the columns and the argument to pass. The class names are `class_names`, or
`id2label` ({id: name}, int or str keys, as in a model's config.json; every
id from 0 named, 255 the ignore id and left out). Images are read undecoded,
so JPEGs are kept byte for byte; `folder_writer` checks and writes the rest.

Needs the `datasets` package (`pip install 'ema-keras[huggingface]'`),
imported when this function runs, never on `import ema_keras`.
"""

import re

from ema_keras.data.errors import DataError
from ema_keras.data.folder_writer import write_folder_dataset
from ema_keras.data.voc import IGNORE_LABEL

INSTALL_HINT = "pip install 'ema-keras[huggingface]'"
# Column name words (at the start of a word of the name) that say what a column holds.
_MASK_WORDS = ("label", "annotation", "mask", "seg", "semantic", "gt", "target")
_IMAGE_WORDS = ("image", "img", "pixel", "photo", "picture", "rgb")
_SPLIT_NAMES = {"validation": "val"}  # what the folder reader's programs ask for


def write_huggingface_dataset(
    dataset, out_dir, *, image_column=None, label_column=None, id2label=None, class_names=None
):
    """Writes `dataset` as the folder dataset `out_dir`; returns `folder_writer.WrittenDataset`."""
    datasets = _import_datasets()
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        parts = {}
        for name, part in dataset.items():
            written = _SPLIT_NAMES.get(name, name)
            if written in parts:
                raise DataError(_name(part), f"has the splits {written!r} and {name!r}, both "
                                f"written as {written}.txt; drop one")
            parts[written] = part
        if not parts:
            raise DataError("DatasetDict", "has no split")
    elif isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        parts = {None: dataset}
    else:
        raise TypeError(
            f"write_huggingface_dataset takes a datasets.Dataset or DatasetDict, got a "
            f"{type(dataset).__name__}; other sources go to write_folder_dataset"
        )
    first = next(iter(parts.values()))
    source = _name(first)
    features = first.features
    if features is None:
        raise DataError(source, "has no features (column types) to find the Image columns in: "
                        "give a Dataset, or an IterableDataset cast to its features")
    image_column, label_column = _columns(features, image_column, label_column, source, datasets)
    names = _class_names(class_names, id2label, source)
    for part in parts.values():
        missing = [c for c in (image_column, label_column) if c not in (part.features or {})]
        if missing:
            raise DataError(_name(part), f"has no column {missing[0]!r} (columns: "
                            f"{', '.join(part.features or ())})")
    examples = {
        split: _pairs(part, image_column, label_column, datasets) for split, part in parts.items()
    }
    return write_folder_dataset(examples.get(None, examples), out_dir, names)


def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"writing a Hugging Face dataset needs the datasets package: {INSTALL_HINT}"
        ) from None
    return datasets


def _name(part):
    info = getattr(part, "info", None)
    return getattr(info, "dataset_name", None) or getattr(info, "builder_name", None) or (
        "Hugging Face dataset"
    )


def _words(column):
    return re.split(r"[^a-z0-9]+", column.lower())


def _is_mask_name(column):
    return any(word.startswith(_MASK_WORDS) for word in _words(column))


def _is_image_name(column):
    return any(word.startswith(_IMAGE_WORDS) for word in _words(column))


def _columns(features, image_column, label_column, source, datasets):
    """(image column, mask column): the ones given, else the dataset's Image columns by name."""
    listing = ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())
    for given, argument in ((image_column, "image_column"), (label_column, "label_column")):
        if given is not None and given not in features:
            raise DataError(source, f"has no column {given!r} ({argument}); columns: {listing}")
    images = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if label_column is None:
        others = [name for name in images if name != image_column]
        found = [name for name in others if _is_mask_name(name)]
        if not found and image_column is not None and len(others) == 1:
            found = others
        label_column = _one(found, "masks", "label_column", source, listing)
    if image_column is None:
        others = [name for name in images if name != label_column]
        found = [name for name in others if _is_image_name(name) and not _is_mask_name(name)]
        image_column = _one(found or (others if len(others) == 1 else []), "images",
                            "image_column", source, listing)
    return image_column, label_column


def _one(candidates, what, argument, source, listing):
    if len(candidates) == 1:
        return candidates[0]
    which = f"{', '.join(candidates)} could" if candidates else "no Image column is named so"
    raise DataError(source, f"cannot tell which column holds the {what} ({which}); pass "
                    f"{argument}='...'; columns: {listing}")


def _class_names(class_names, id2label, source):
    if class_names is not None and id2label is not None:
        raise DataError(source, "give class_names or id2label, not both")
    if class_names is not None:
        return tuple(class_names)
    if id2label is None:
        raise DataError(source, "has no class names: pass id2label={0: 'background', ...} (the "
                        "model's or dataset's id2label.json) or class_names=[...]")
    names = {}
    for key, name in dict(id2label).items():
        try:
            class_id = int(key)
        except (TypeError, ValueError):
            raise DataError("id2label", f"key {key!r} is not a class id") from None
        if class_id in names:
            raise DataError("id2label", f"id {class_id} is given twice ({key!r})")
        names[class_id] = name
    names.pop(IGNORE_LABEL, None)  # the ignore id, which takes no class
    if not names or min(names) < 0:
        raise DataError("id2label", f"needs the class ids 0..N-1, got {sorted(names)[:5]}")
    gaps = sorted(set(range(max(names) + 1)) - set(names))
    if gaps:
        raise DataError("id2label", f"has no name for id(s) {gaps[:5]}: every id from 0 to "
                        f"{max(names)} needs one")
    return tuple(names[i] for i in range(len(names)))


def _pairs(part, image_column, label_column, datasets):
    """A generator of (image, mask) of one split, Image columns as bytes (no decoding)."""
    part = part.select_columns([image_column, label_column])
    for column in (image_column, label_column):
        if isinstance(part.features[column], datasets.Image):
            part = part.cast_column(column, datasets.Image(decode=False))
    part = part.with_format(None)

    def pairs():
        for row in part:
            yield _value(row[image_column]), _value(row[label_column])

    return pairs()


def _value(value):
    """Undecoded Image values ({"bytes", "path"}) as the file's bytes; others as they are."""
    if isinstance(value, dict) and set(value) <= {"bytes", "path"}:
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):
            with open(value["path"], "rb") as handle:
                return handle.read()
    return value
