"""LegacySegmenter: what 0.1's segmenter classes (`EMANet`, `MobileEMANet`) keep doing.

Their `.keras` files hold the head's layers in the segmenter itself, beside the
image encoder, where `EMANetImageSegmenter` holds them in its backbone. The
classes stay so that those files load, predict and train as they did; built
directly they warn, and their `from_preset` builds the family's segmenter.
"""

import warnings

from ema_keras.models import preset_files
from ema_keras.models.image_segmenter import EMANetImageSegmenter
from ema_keras.models.presets import is_preset_name, preset_architecture
from ema_keras.models.segmenter_base import SegmenterBase
from ema_keras.models.segmenter_parts import architecture_of_config


class LegacySegmenter(SegmenterBase):
    """Base of `EMANet` and `MobileEMANet`: 0.1's layout, kept for its files.

    A subclass sets `successor` (what to build instead, for the warning),
    `backbone_class` (its encoder) and `shared_arguments` (keywords its
    presets gave both encoder and head), besides `architecture`.
    """

    backbone_class = None
    shared_arguments = ()
    successor = ""
    _loading_file = False

    def warn_if_built_directly(self):
        """A DeprecationWarning, unless the model is being loaded from a file (the class's use)."""
        if not LegacySegmenter._loading_file:
            warnings.warn(
                f"{type(self).__name__}(...) builds 0.1's layout, kept for its files; build "
                f"{self.successor} instead.",
                DeprecationWarning,
                stacklevel=4,
            )

    @classmethod
    def from_config(cls, config):
        # A file saved by 0.1: loading it is what the class is kept for, no warning.
        loading, LegacySegmenter._loading_file = LegacySegmenter._loading_file, True
        try:
            return super().from_config(config)
        finally:
            LegacySegmenter._loading_file = loading

    @classmethod
    def from_preset(cls, preset, /, **kwargs):
        """Deprecated: `EMANetImageSegmenter.from_preset`, which builds the family's segmenter."""
        warnings.warn(
            f"{cls.__name__}.from_preset is deprecated: EMANetImageSegmenter.from_preset builds "
            f"the same preset as an EMANetImageSegmenter.",
            DeprecationWarning,
            stacklevel=2,
        )
        if is_preset_name(preset):
            architecture, held = preset_architecture(preset), f"Preset {preset!r}"
        elif preset_files.is_preset_location(preset):
            config = preset_files.read_json(preset, preset_files.CONFIG_FILE)
            architecture = architecture_of_config(config)
            held = f"{preset}: {preset_files.CONFIG_FILE} holds {config.get('registered_name')}, it"
        else:
            architecture = cls.architecture  # not a preset: from_preset names what is wrong
        if architecture != cls.architecture:
            raise ValueError(
                f"{held} is not {cls.__name__}'s architecture: build it with "
                "EMANetImageSegmenter.from_preset."
            )
        return EMANetImageSegmenter.from_preset(preset, **kwargs)
