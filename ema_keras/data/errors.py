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


class PreflightError(DataError):
    """Every problem found in a source before a run, summarised on one line.

    The message names the first few files and what is wrong with each, and how
    many problems there are in all; `.problems` holds every DataError and
    `.paths` the files they name, in order.
    """

    def __init__(self, problems, what="data", shown=3):
        self.problems = list(problems)
        self.paths = list(dict.fromkeys(problem.path for problem in self.problems))
        self.path = self.paths[0]
        listed = "; ".join(str(problem) for problem in self.problems[:shown])
        more = len(self.problems) - shown
        self.reason = (
            f"{len(self.problems)} problem(s) in {len(self.paths)} file(s) of the {what}: "
            + listed
            + (f"; and {more} more" if more > 0 else "")
        ).replace("\n", " ")
        ValueError.__init__(self, self.reason)
