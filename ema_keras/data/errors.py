"""Errors raised for bad dataset files.

Every error names the offending file (or split file) in its message and keeps
it in `.path`, so a user with ten thousand images knows which one to fix. The
validator collects them instead of raising, to report all problems at once.
"""


class DataError(ValueError):
    """A dataset file that cannot be used as it is."""

    def __init__(self, path, message):
        self.path = str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}")


class MissingFileError(DataError, FileNotFoundError):
    """A split file, image or label that does not exist."""


class EmptySplitError(DataError):
    """A split file that names no image."""


class CorruptFileError(DataError):
    """An image or label that cannot be decoded."""


class UnsupportedModeError(DataError):
    """An image or label whose pixel format is neither converted nor accepted."""


class SizeMismatchError(DataError):
    """An image and its label of different heights or widths."""


class LabelValueError(DataError):
    """A label holding class ids >= num_classes that are not the ignore label 255."""
