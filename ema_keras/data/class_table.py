"""The classes of a dataset of one's own: names, ids, the colours or values that stand for them.

A folder dataset declares its classes in `classes.txt`, one per line; the line
number (from 0, blank lines and `#` comments skipped) is the class's training
id:

    background
    road 128,64,128          # colour masks: pixels of this RGB colour are "road"
    defect =255              # index masks: pixels of value 255 are "defect"
    __ignore__ 0,0,0         # colour masks: pixels of this colour are ignored (no id)

A line ending in `r,g,b` gives the class's colour; when every class has one,
masks are read as RGB colour masks mapped by those colours (colours in no line
are refused, naming the file). Otherwise masks are 8-bit index PNGs whose
value is the id (255 = ignore), unless a line ends in `=N`: then pixels of
value N are that class (a 0/255 binary mask declares `foreground =255`).
`__ignore__` lines take no id; the colour (or `=N` value) they give is ignored.

The annotation-tool readers (`cvat`, `labelme`, `coco_instances`) build the
same table from what the tool writes. `ClassTable.to_json` / `from_json` is how
a run and a model file record it.
"""

import dataclasses
import re
from typing import Optional, Tuple

import numpy as np

from ema_keras.data.errors import DataError, LabelValueError, MissingFileError, UnsupportedModeError
from ema_keras.data.voc import IGNORE_LABEL, voc_colormap

IGNORE_NAME = "__ignore__"
_COLOUR = re.compile(r"^(?P<name>.*?)\s+(?P<r>\d{1,3})\s*,\s*(?P<g>\d{1,3})\s*,\s*(?P<b>\d{1,3})$")
_VALUE = re.compile(r"^(?P<name>.*?)\s*=\s*(?P<value>\d{1,5})$")

Colour = Tuple[int, int, int]


class ClassTableError(DataError):
    """A class list (classes.txt, labelmap.txt, labels.txt, categories) that cannot be used."""


def _key(colour):
    return (colour[0] << 16) | (colour[1] << 8) | colour[2]


def _unkey(key):
    return (key >> 16, (key >> 8) & 255, key & 255)


def default_palette(num_classes):
    """Display colours for classes without their own: VOC's colour map (255 classes at most)."""
    return tuple(tuple(int(c) for c in colour) for colour in voc_colormap()[:num_classes])


@dataclasses.dataclass(frozen=True)
class ClassTable:
    """Class names, display palette, and how masks encode each class (see the module docstring)."""

    names: Tuple[str, ...]
    palette: Tuple[Colour, ...]  # display colour of each id (label PNGs, overlays, TensorBoard)
    # Colour masks: the RGB colour of each class (None: index masks).
    colours: Optional[Tuple[Colour, ...]] = None
    # Index masks: the stored value of each class (None: the id itself).
    stored_values: Optional[Tuple[int, ...]] = None
    ignore_colours: Tuple[Colour, ...] = ()
    ignore_values: Tuple[int, ...] = ()

    def __post_init__(self):
        if not self.names:
            raise ValueError("a class table needs at least one class")
        if len(self.names) > IGNORE_LABEL:
            raise ValueError(f"at most {IGNORE_LABEL} classes (255 is the ignore label)")
        if len(self.palette) != len(self.names):
            raise ValueError("one palette colour per class")

    @property
    def num_classes(self):
        return len(self.names)

    @property
    def colour_masks(self):
        return self.colours is not None

    @classmethod
    def from_names(cls, names, palette=None):
        """Index masks whose values are the ids; palette VOC's unless given."""
        names = tuple(str(name) for name in names)
        palette = tuple(tuple(int(c) for c in colour) for colour in palette or ())
        return cls(names, palette or default_palette(len(names)))

    @property
    def needs_conversion(self):
        """Masks must be rewritten as ids (colours, or values other than the ids)."""
        return self.colour_masks or self.stored_values is not None or bool(self.ignore_values)

    def ids_of_mask(self, mask, path):
        """(H, W) uint8 training ids (255 = ignore) of a mask array as the table reads it.

        `mask` is (H, W, 3) uint8 for colour masks, (H, W) integers for index
        masks. A colour or value that no line declares is a LabelValueError
        naming `path` and the value.
        """
        if self.colour_masks:
            if mask.ndim != 3 or mask.shape[-1] != 3:
                raise UnsupportedModeError(
                    path, f"is not an RGB colour mask (shape {mask.shape}); the class table "
                    "gives colours r,g,b"
                )
            keys = mask.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
            lookup = {_key(c): i for i, c in enumerate(self.colours)}
            lookup.update({_key(c): IGNORE_LABEL for c in self.ignore_colours})
            what = "colour"
        else:
            keys = np.asarray(mask).astype(np.int64)
            values = self.stored_values or tuple(range(self.num_classes))
            lookup = {value: i for i, value in enumerate(values)}
            lookup.update({value: IGNORE_LABEL for value in self.ignore_values})
            if self.stored_values is None:
                lookup.setdefault(IGNORE_LABEL, IGNORE_LABEL)
            what = "value"
        unique, inverse = np.unique(keys, return_inverse=True)
        unknown = [key for key in unique.tolist() if key not in lookup]
        if unknown:
            shown = [_unkey(key) for key in unknown[:5]] if what == "colour" else unknown[:5]
            raise LabelValueError(
                path,
                f"mask {what}(s) {shown} are in no line of the class table"
                + (" (255 is a class of its own only when a line says =255)" if 255 in unknown
                   else ""),
            )
        ids = np.array([lookup[key] for key in unique.tolist()], dtype=np.uint8)
        return ids[inverse].reshape(keys.shape[:2])

    def to_json(self):
        return {
            "names": list(self.names),
            "palette": [list(colour) for colour in self.palette],
            "colours": None if self.colours is None else [list(c) for c in self.colours],
            "stored_values": None if self.stored_values is None else list(self.stored_values),
            "ignore_colours": [list(colour) for colour in self.ignore_colours],
            "ignore_values": list(self.ignore_values),
        }

    @classmethod
    def from_json(cls, value):
        def colours(items):
            return tuple(tuple(int(c) for c in colour) for colour in items)

        return cls(
            names=tuple(value["names"]),
            palette=colours(value["palette"]),
            colours=None if value.get("colours") is None else colours(value["colours"]),
            stored_values=None
            if value.get("stored_values") is None
            else tuple(int(v) for v in value["stored_values"]),
            ignore_colours=colours(value.get("ignore_colours", ())),
            ignore_values=tuple(int(v) for v in value.get("ignore_values", ())),
        )


def _colour(match, path, line_number):
    colour = tuple(int(match[key]) for key in "rgb")
    if max(colour) > 255:
        raise ClassTableError(path, f"line {line_number}: colour {colour} has a channel above 255")
    return colour


def parse_class_lines(lines, path):
    """A ClassTable from the lines of a classes.txt (see the module docstring)."""
    names, colours, values = [], [], []
    ignore_colours, ignore_values = [], []
    for line_number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        colour = value = None
        match = _COLOUR.match(line)
        if match:
            name, colour = match["name"].strip(), _colour(match, path, line_number)
        elif _VALUE.match(line):
            match = _VALUE.match(line)
            name, value = match["name"].strip(), int(match["value"])
            if value > 255:
                raise ClassTableError(
                    path, f"line {line_number}: value {value} is not an 8-bit mask value (0..255)"
                )
        else:
            name = line
        if not name:
            raise ClassTableError(path, f"line {line_number}: no class name before the colour")
        if name == IGNORE_NAME:
            if colour is None and value is None:
                raise ClassTableError(
                    path, f"line {line_number}: {IGNORE_NAME} needs a colour r,g,b or a value =N"
                )
            (ignore_colours if colour else ignore_values).append(colour or value)
            continue
        if name in names:
            raise ClassTableError(path, f"line {line_number}: class {name!r} is listed twice")
        names.append(name)
        colours.append(colour)
        values.append(value)
    if not names:
        raise ClassTableError(path, "lists no class (one class name per line)")
    has_colour = [colour is not None for colour in colours]
    if any(has_colour) and not all(has_colour):
        missing = names[has_colour.index(False)]
        raise ClassTableError(
            path,
            f"some classes have a colour r,g,b and {missing!r} has none: give every class a "
            "colour (colour masks) or none (index masks)",
        )
    if any(has_colour):
        _check_unique(colours + ignore_colours, "colour", path)
        return ClassTable(
            tuple(names), tuple(colours), colours=tuple(colours),
            ignore_colours=tuple(ignore_colours),
        )
    palette = default_palette(len(names))
    if all(value is None for value in values) and not ignore_values:
        return ClassTable(tuple(names), palette)
    stored = tuple(i if value is None else value for i, value in enumerate(values))
    _check_unique(list(stored) + ignore_values, "mask value", path)
    return ClassTable(
        tuple(names), palette, stored_values=stored, ignore_values=tuple(ignore_values)
    )


def _check_unique(items, what, path):
    seen = set()
    for item in items:
        if item in seen:
            raise ClassTableError(path, f"{what} {item} stands for two classes")
        seen.add(item)


def read_class_table(path):
    """The ClassTable of a classes.txt file; MissingFileError or ClassTableError naming it."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise MissingFileError(
            path, "no classes.txt: list the classes one per line, the line number is the id"
        ) from None
    except UnicodeDecodeError as error:
        raise ClassTableError(path, f"is not UTF-8 text ({error.reason})") from None
    return parse_class_lines(lines, path)
