"""Label maps for image files: the library behind `recipes/predict.py`.

Each image gets files in the output folder: `<stem>.png`, its class ids as a
palette PNG, and `<stem>_overlay.jpg`, the classes blended over the image with
a legend of the classes present (JPEG); with attention maps asked for, also
`<stem>_attention.png`, the EMA unit's bases of largest mass as heat maps over
the image (`attention_maps`). The colours and names are the model's own when
it carries them (every model ema-keras trains does), else a dataset's
(`ema_keras.visualize.label_colours`).

Inputs are files and folders; folders are read recursively, and an image in a
subfolder has its outputs in the same subfolder of the output folder. Every
format photos come in is read (`ema_keras.data.photos`: JPEG, PNG, WebP, TIFF,
BMP, GIF's first frame; EXIF orientation applied; alpha dropped, 16 bits
scaled to 8, each with a note). Files that cannot be read are listed all at
once before anything is written and skipped, the others predicted; the
`PredictionReport` counts both.

Images whose stems another input in the same output folder shares (`a.jpg`,
`a.png`, compared ignoring case) keep their extension in the name
(`a_jpg.png`, `a_png.png`); if that is still not enough (the same file name in
two folders given), the name of the parent folder is put first
(`day1_a_jpg.png`).

Nothing a user gave is overwritten. Every output path is decided, and checked,
before anything is written: the output folder must hold none of the inputs, and
a file already at an output path is replaced only if this module wrote it (a
marker in its PNG text / JPEG comment), e.g. on a re-run.
"""

import collections
import dataclasses
import os

import numpy as np
from PIL import Image, PngImagePlugin

from ema_keras.data.errors import DataError, MissingFileError
from ema_keras.data.photos import PHOTO_EXTENSIONS, load_photo
from ema_keras.inference.attention_maps import DEFAULT_NUM_BASES, AttentionMapper, attention_grid
from ema_keras.inference.multi_scale import predict_probabilities
from ema_keras.visualize import label_colours, overlay, with_legend

LABEL_SUFFIX = ".png"
OVERLAY_SUFFIX = "_overlay.jpg"
ATTENTION_SUFFIX = "_attention.png"
# Written into every output, so that a re-run may replace its own files and nobody else's.
OUTPUT_MARKER = "ema-keras prediction"


class OutputConflictError(ValueError):
    """Writing the predictions would replace an input or a file not written by us."""

    def __init__(self, path, message):
        self.path = os.fspath(path)
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class PlannedOutput:
    image_path: str
    label_path: str
    overlay_path: str
    attention_path: str | None = None  # only when attention maps are asked for

    @property
    def output_paths(self):
        paths = (self.label_path, self.overlay_path, self.attention_path)
        return tuple(path for path in paths if path is not None)


@dataclasses.dataclass
class PredictionReport:
    """What a prediction run did.

    Attributes:
        written: the label-map paths written, in input order.
        notes: {image path: what was converted on reading}, e.g. "RGBA: alpha dropped".
        skipped: {image path: why it could not be read}; nothing was written for them.
    """

    written: list
    notes: dict
    skipped: dict

    def summary(self):
        """One line: how many label maps were written, converted and skipped."""
        converted = f", {len(self.notes)} converted on reading" if self.notes else ""
        skipped = f", {len(self.skipped)} skipped (unreadable)" if self.skipped else ""
        return f"{len(self.written)} label maps written{converted}{skipped}"


def list_images(inputs):
    """[(image path, output subfolder)] from a list of files and folders.

    A folder gives its photos (`photos.PHOTO_EXTENSIONS`, any case) in every
    subfolder, sorted, each with its subfolder relative to the folder given
    (hidden files and folders left out); a file given is taken whatever its
    extension, with no subfolder. A file given twice (or also through its
    folder) is listed once.
    """
    found = []
    for item in inputs:
        if os.path.isdir(item):
            for parent, folders, names in os.walk(item):
                folders[:] = sorted(name for name in folders if not name.startswith("."))
                subfolder = os.path.relpath(parent, item)
                found += [
                    (os.path.join(parent, name), "" if subfolder == "." else subfolder)
                    for name in sorted(names)
                    if name.lower().endswith(PHOTO_EXTENSIONS) and not name.startswith(".")
                ]
        elif os.path.isfile(item):
            found.append((item, ""))
        else:
            raise MissingFileError(item, "input is neither an image file nor a folder")
    if not found:
        given = ", ".join(os.fspath(item) for item in inputs)
        raise DataError(given, f"no images ({', '.join(PHOTO_EXTENSIONS)}) found")
    seen = set()
    unique = []
    for path, subfolder in found:
        if file_key(path) not in seen:
            seen.add(file_key(path))
            unique.append((path, subfolder))
    return unique


def output_names(image_paths):
    """The name each image's outputs share: its stem, made unique as the module says."""

    def name(path, level):
        stem, extension = os.path.splitext(os.path.basename(path))
        if level == 0:
            return stem
        with_extension = stem + extension.replace(".", "_")
        if level == 1:
            return with_extension
        return f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}_{with_extension}"

    levels = [0] * len(image_paths)
    while True:
        names = [name(path, level) for path, level in zip(image_paths, levels)]
        clashes = collections.defaultdict(list)
        for index, value in enumerate(names):
            clashes[value.lower()].append(index)  # lower: case-insensitive file systems
        clashes = [indices for indices in clashes.values() if len(indices) > 1]
        if not clashes:
            return names
        for indices in clashes:
            if all(levels[index] == 2 for index in indices):
                first, second = (image_paths[index] for index in indices[:2])
                raise OutputConflictError(
                    second,
                    f"inputs {first} and {second} would both be written as "
                    f"{names[indices[0]]}{LABEL_SUFFIX}: predict them into separate output_dirs",
                )
            for index in indices:
                levels[index] = min(levels[index] + 1, 2)


def plan_predictions(inputs, output_dir, *, attention_maps=False):
    """Where each image's outputs go, checked before anything is written.

    With `attention_maps`, each image also gets `<name>_attention.png`.

    Returns:
        A list of `PlannedOutput`, one per image.

    Raises:
        OutputConflictError: an output would replace an input or a file not
            written by this module, or output_dir holds an input.
        MissingFileError, DataError: an input does not exist, or names no image.
    """
    listed = list_images(inputs)
    image_paths = [path for path, _ in listed]
    output_dir = os.fspath(output_dir)
    by_subfolder = collections.defaultdict(list)
    for index, (_, subfolder) in enumerate(listed):
        by_subfolder[subfolder].append(index)
    names = [None] * len(listed)
    for subfolder, indices in by_subfolder.items():  # names are unique within each output folder
        for index, name in zip(indices, output_names([image_paths[i] for i in indices])):
            names[index] = os.path.join(output_dir, subfolder, name)
    plan = [
        PlannedOutput(
            path,
            stem + LABEL_SUFFIX,
            stem + OVERLAY_SUFFIX,
            stem + ATTENTION_SUFFIX if attention_maps else None,
        )
        for path, stem in zip(image_paths, names)
    ]
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputConflictError(output_dir, f"output_dir {output_dir} is a file, not a folder")
    inputs_by_key = {file_key(path): path for path in image_paths}
    outputs = [path for item in plan for path in item.output_paths]
    for path in outputs:
        if file_key(path) in inputs_by_key:
            raise OutputConflictError(
                path,
                f"writing {path} would overwrite the input {inputs_by_key[file_key(path)]}: "
                "choose an output_dir that holds no input",
            )
    _refuse_shared_outputs(plan)
    output_folder = file_key(output_dir)
    for path in image_paths:
        # The folder the path names, and the one its file really lives in.
        named_in = file_key(os.path.dirname(os.path.abspath(path)))
        if output_folder in (named_in, os.path.dirname(file_key(path))):
            raise OutputConflictError(
                path, f"output_dir {output_dir} holds the input {path}: choose another folder"
            )
    for path in outputs:
        refuse_foreign_file(path, written_by_us)
    return plan


def refuse_foreign_file(path, ours):
    """Raises `OutputConflictError` when `path` exists and `ours(path)` says predict did not
    write it: an output never replaces a file of the user's."""
    if os.path.lexists(path) and not ours(path):
        raise OutputConflictError(
            path,
            f"{path} exists and was not written by predict: move it, or choose another "
            "output_dir",
        )


def _refuse_shared_outputs(plan):
    # One image's attention grid can be another's label map: a_attention.png is the
    # label map of an input named a_attention.jpg.
    owners = {}
    for item in plan:
        for path in item.output_paths:
            owner = owners.setdefault(path.lower(), item.image_path)
            if owner != item.image_path:
                raise OutputConflictError(
                    item.image_path,
                    f"inputs {owner} and {item.image_path} would both be written as {path}: "
                    "predict them into separate output_dirs",
                )


def predict_label_map(model, image, **inference_options):
    """(H, W, 3) uint8 RGB -> (H, W) uint8 class ids at the image's size."""
    batch = np.asarray(image, np.float32)[None]  # raw pixels: predict_probabilities feeds the model
    probabilities = predict_probabilities(model, batch, **inference_options)
    return np.argmax(probabilities[0], axis=-1).astype(np.uint8)


def read_inputs(plan):
    """({image path: note} of the images converted on reading, {image path: why unreadable}).

    Every image of `plan` is decoded once, so that all the unreadable ones are
    known, and can be listed together, before anything is written.
    """
    notes, skipped = {}, {}
    for item in plan:
        try:
            _, note = load_photo(item.image_path)
        except DataError as error:
            skipped[item.image_path] = error.reason
            continue
        if note:
            notes[item.image_path] = note
    return notes, skipped


def write_predictions(
    model,
    plan,
    *,
    attention_bases=DEFAULT_NUM_BASES,
    dataset="voc",
    colours=None,
    legend=True,
    skipped=(),
    **inference_options,
):
    """Writes the outputs of every image of `plan` (`plan_predictions`) but those in `skipped`.

    Label maps and overlays are coloured in `colours` (a
    `visualize.LabelColours`; default: the model's palette when it has one,
    else `dataset`'s, VOC's or e.g. Cityscapes' official colours; pass the
    trained model's when `model` is a folded copy, which carries none);
    with `legend`, each overlay gets a strip on its right naming the classes
    it shows (`ema_keras.visualize.with_legend`).

    Attention grids (where planned) show the `attention_bases` bases of largest
    mass, computed on the whole image at scale 1 whatever the inference options.

    Returns:
        A `PredictionReport`: the label maps written, the notes on converted
        images, and `skipped` ({path: reason}, from `read_inputs`) plus any
        image found unreadable now.

    Raises:
        MissingAttentionUnitError, ValueError: attention grids are planned and
            the model has no EMA unit, or `attention_bases` < 1 (before anything
            is written).
    """
    wants_attention = any(item.attention_path for item in plan)
    if wants_attention and int(attention_bases) < 1:
        raise ValueError(f"attention_bases must be >= 1, got {attention_bases}")
    mapper = AttentionMapper(model) if wants_attention else None
    colours = colours or label_colours(dataset, model)
    report = PredictionReport([], {}, dict(skipped))
    for item in plan:
        if item.image_path in report.skipped:
            continue
        try:
            image, note = load_photo(item.image_path)
        except DataError as error:  # changed since it was read: skipped like the others
            report.skipped[item.image_path] = error.reason
            continue
        if note:
            report.notes[item.image_path] = note
        os.makedirs(os.path.dirname(item.label_path) or ".", exist_ok=True)
        label = predict_label_map(model, image, **inference_options)
        save_label_map(label, item.label_path, colours.colormap)
        save_overlay(image, label, item.overlay_path, colours, legend=legend)
        if item.attention_path:
            grid = attention_grid(image, mapper(image), attention_bases)
            _save_png(Image.fromarray(grid), item.attention_path)
        report.written.append(item.label_path)
    return report


def predict_files(model, inputs, output_dir, *, attention_maps=False, **options):
    """Writes `<name>.png` (label map in the model's palette) and `<name>_overlay.jpg` per image.

    With `attention_maps`, also `<name>_attention.png` (`attention_bases=` says
    how many bases; see `write_predictions`).

    Output names and the checks that refuse to overwrite anything are those of
    `plan_predictions`; nothing is written when it refuses. Unreadable images
    are skipped (`read_inputs`). Returns a `PredictionReport`.
    """
    plan = plan_predictions(inputs, output_dir, attention_maps=attention_maps)
    _, skipped = read_inputs(plan)
    return write_predictions(model, plan, skipped=skipped, **options)


def file_key(path):
    """What two paths naming the same file have in common (links and case resolved)."""
    return os.path.normcase(os.path.realpath(path))


def save_label_map(label, path, colormap):
    """(H, W) class ids as a palette PNG at `path`, marked as ours (`written_by_us`)."""
    # As `image_io.save_palette_png`, with the marker that lets a re-run replace the file.
    label = np.ascontiguousarray(label, dtype=np.uint8)
    image = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
    image.putpalette(np.asarray(colormap, np.uint8).tobytes())
    _save_png(image, path)


def save_overlay(image, label, path, colours, *, legend=True):
    """The classes of `label` blended over `image`, as a marked JPEG at `path`.

    With `legend`, a strip on its right names the classes it shows.
    """
    picture = overlay(image, label, colours=colours)
    if legend:
        picture = with_legend(picture, label, colours)
    Image.fromarray(picture).save(path, format="JPEG", quality=90, comment=OUTPUT_MARKER)


def _save_png(image, path):
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", OUTPUT_MARKER)
    image.save(path, format="PNG", pnginfo=info)


def written_by_us(path):
    """Whether `path` is an image this module wrote (its marker), so a re-run may replace it."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        with Image.open(path) as image:
            marker = image.info.get("Software", image.info.get("comment", b""))
    except (OSError, SyntaxError, ValueError):  # not an image at all: not ours
        return False
    if isinstance(marker, bytes):
        marker = marker.decode("utf8", "replace")
    return marker == OUTPUT_MARKER
