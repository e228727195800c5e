"""The error of training settings, below every training module that raises it.

`config`, `strategy`, `backends`, `checkpointing` and `run_record` raise it;
it lives here, importing nothing, so that none of them imports another for it.
"""


class SettingsError(ValueError):
    """Training settings that cannot work together or with the data; names the flag."""
