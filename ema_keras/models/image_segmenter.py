"""EMANetImageSegmenter: what every EMANet segmenter shares, its presets above all.

`EMANet` (dilated ResNet, the paper's head) and `MobileEMANet` (MobileNetV3,
the phone head) are its two architectures. Through this class:

- `EMANetImageSegmenter.from_preset(preset, **overrides)` builds any preset: a
  built-in name (`ema_keras.models.presets`), a preset folder written by
  `save_to_preset`, `"hf://org/name"` or `"kaggle://owner/model/keras/variant"`;
  `EMANet.from_preset` and `MobileEMANet.from_preset` build their own only;
- `model.save_to_preset(folder)` writes keras-hub's layout (`config.json`,
  `model.weights.h5`, `metadata.json`; see `ema_keras.models.preset_files`),
  which `upload_preset` shares.
"""

import warnings

import keras

from ema_keras.layers.conv_bn import layer_seed
from ema_keras.losses import AUX_LOSS_WEIGHT, MaskedSparseCrossEntropy
from ema_keras.metrics import SegmentationMeanIoU
from ema_keras.models import preset_files
from ema_keras.models.functional_model import (
    BASE_ARGUMENTS,
    FunctionalModel,
    check_keywords,
    with_article,
)
from ema_keras.models.presets import (
    get_preset,
    is_preset_name,
    preset_architecture,
    weights_to_load,
)
from ema_keras.optimizers import OFFICIAL_LEARNING_RATE, ParameterGroupSGD, parameter_groups
from ema_keras.schedules import PolyDecay
from ema_keras.weights.loading import load_model_weights


def pyramid_features(backbone, inputs, levels, owner):
    """The backbone's `pyramid_outputs` (a dict with `levels`) computed on `inputs`.

    A `DilatedResNet` or `MobileNetV3Backbone` returns its pyramid; any other
    `keras.Model` with a `pyramid_outputs` dict (keras-hub's backbones) is
    wrapped in a model returning it.
    """
    pyramid = getattr(backbone, "pyramid_outputs", None)
    if not isinstance(backbone, keras.Model) or not isinstance(pyramid, dict):
        raise ValueError(
            f"`backbone` must be a {owner} (or a keras.Model with a `pyramid_outputs` dict), "
            f"got {type(backbone).__name__}."
        )
    if any(level not in pyramid for level in levels):
        raise ValueError(
            f"The backbone's `pyramid_outputs` ({sorted(pyramid)}) lack {list(levels)}."
        )
    own, wanted = keras.tree.flatten(backbone.output), keras.tree.flatten(pyramid)
    if len(own) == len(wanted) and all(a is b for a, b in zip(own, wanted)):
        return backbone(inputs)
    pyramid_model = keras.Model(backbone.inputs, pyramid, name=f"{backbone.name}_pyramid")
    return pyramid_model(inputs)


class EMANetImageSegmenter(FunctionalModel):
    """Base of the EMANet segmenters: building from presets and saving as one.

    A subclass sets `architecture` (its name in the preset data),
    `backbone_class` (the backbone its presets describe),
    `classifier_layer_names` (its layers that output the classes) and
    `shared_arguments` (keywords of `from_preset` that go to both the
    backbone and the head).
    """

    architecture = None
    backbone_class = None
    # The layers whose outputs are the classes (the aux head's only when the model
    # has one): all that fine-tuning to new classes re-initialises.
    classifier_layer_names = ()
    shared_arguments = ()
    _architectures = {}  # architecture name -> class, filled as the subclasses are defined

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("architecture"):
            EMANetImageSegmenter._architectures[cls.architecture] = cls

    @classmethod
    def from_preset(cls, preset, /, *, load_weights=None, **overrides):
        """Builds a preset: a built-in name, a preset folder, `hf://...` or `kaggle://...`.

        `overrides` replace the preset's arguments; an unknown keyword raises
        a `TypeError` naming it. Backbone arguments (for `EMANet`: `depth`,
        `block_counts`, `stem`, `output_stride`, `multi_grid`, `width`,
        `use_conv_bias`, `include_preprocessing`; for `MobileEMANet`:
        `variant`, `output_stride`, `include_preprocessing`) go to the
        backbone; BatchNorm settings, `image_shape`, `seed` and `dtype` to
        both; the rest to the head. `backbone=` may be a built backbone or a
        dict of backbone arguments (built-in presets only).

        `load_weights`: `None` (default) loads the preset's weights when it
        has them; `True` requires them; `False` never loads. A built-in
        preset's weights load strictly (`ema_keras.weights.load_model_weights`:
        an override of `num_classes` needs `load_weights=False`); a preset
        folder's load for fine-tuning (`load_fine_tuning_weights`): with
        another `num_classes` every weight but the classifiers'.

        Loading runs no code from the preset: its `config.json` must name an
        EMANet segmenter and is read in Keras' safe mode (a `Lambda` is
        refused), its weights are arrays in an HDF5 file.

            model = EMANetImageSegmenter.from_preset("emanet_mobilenetv3_small_voc")
            mine = EMANetImageSegmenter.from_preset("hf://me/emanet-defects", num_classes=4)
        """
        if "weights" in overrides:
            raise TypeError(
                f"{cls.__name__}.from_preset got an unexpected keyword argument 'weights': use "
                "load_weights=True with a preset that has weights, or "
                "ema_keras.weights.load_model_weights(model, path)."
            )
        if not is_preset_name(preset) and preset_files.is_preset_location(preset):
            return preset_files.load_preset(
                cls, preset, load_weights=load_weights, overrides=overrides
            )
        architecture = cls._architectures[preset_architecture(preset)]
        if not issubclass(architecture, cls):
            raise ValueError(
                f"Preset {preset!r} is {with_article(architecture.__name__)}: build it with "
                f"{architecture.__name__}.from_preset or EMANetImageSegmenter.from_preset."
            )
        weights = weights_to_load(preset, load_weights)
        model = architecture._from_arguments(get_preset(preset), overrides)
        if weights is not None:
            load_model_weights(model, weights)
        return model

    @classmethod
    def _from_arguments(cls, config, overrides):
        """`cls(**config)` with `overrides` applied, the backbone from `config["backbone"]`."""
        owner = f"{cls.__name__}.from_preset"
        renamed = {**cls._renamed_arguments, **cls.backbone_class._renamed_arguments}
        accepted = set(
            cls.config_arguments() + cls.backbone_class.config_arguments() + list(BASE_ARGUMENTS)
        )
        given = [key for key in overrides if key not in renamed]
        check_keywords(owner, given, sorted(accepted | {"load_weights"}))
        for old in set(renamed) & set(overrides):
            warnings.warn(
                f"{owner}({old}=...) is deprecated; use {renamed[old]}=...",
                DeprecationWarning,
                stacklevel=3,
            )
        overrides = {renamed.get(key, key): value for key, value in overrides.items()}
        backbone = _build_backbone(
            cls.backbone_class, config.pop("backbone"), overrides, cls.shared_arguments
        )
        config.update(overrides, backbone=backbone)
        return cls(**config)

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        metrics="auto",
        *,
        loss_weights="auto",
        decay_steps=None,
        **kwargs,
    ):
        """`keras.Model.compile` with the official EMANet training setup as its defaults.

        - `optimizer="auto"`: the official SGD (`ParameterGroupSGD`: learning
          rate 0.009, momentum 0.9, L2 decay 1e-4 on kernels, biases at twice
          the rate, BatchNorm undecayed) with this model's parameter groups.
          With `decay_steps` (the training steps) its rate follows the poly
          schedule to 0 (`PolyDecay(0.009, decay_steps, power=0.9)`); without,
          it stays at 0.009.
        - `loss="auto"`: cross-entropy over the pixels not labelled 255
          (`MaskedSparseCrossEntropy`), one per output.
        - `loss_weights="auto"`: with an auxiliary head and a loss per output
          (the default, or a dict), 1.0 for `logits` and 0.4 for `aux_logits`,
          as the official code weights them; else none.
        - `metrics="auto"`: mean IoU over the classes (`SegmentationMeanIoU`)
          of `logits`.

        Anything else (an optimizer, a loss, `None`) is passed to Keras as given.

            model = EMANetImageSegmenter.from_preset("emanet_mobilenetv3_small_voc")
            model.compile(decay_steps=30_000)
            model.fit(images_and_masks, steps_per_epoch=1000, epochs=30)
        """
        if optimizer == "auto":
            learning_rate = OFFICIAL_LEARNING_RATE
            if decay_steps is not None:
                learning_rate = PolyDecay(learning_rate, decay_steps)
            optimizer = ParameterGroupSGD(learning_rate=learning_rate)
            optimizer.set_parameter_groups(parameter_groups(self))
        elif decay_steps is not None:
            raise ValueError(
                "`decay_steps` sets the schedule of optimizer='auto'; give your own optimizer "
                "its own schedule."
            )
        objectives = segmenter_objectives(self, MaskedSparseCrossEntropy)
        if loss_weights == "auto" and not (loss == "auto" or isinstance(loss, dict)):
            loss_weights = None  # one loss given for every output: Keras weighs them alike
        super().compile(
            optimizer=optimizer,
            loss=objectives["loss"] if loss == "auto" else loss,
            loss_weights=objectives["loss_weights"] if loss_weights == "auto" else loss_weights,
            metrics=objectives["metrics"] if metrics == "auto" else metrics,
            **kwargs,
        )

    def compile_from_config(self, config):
        # A saved compile config holds what Keras' own compile received (the
        # optimizer, losses and metrics as resolved above), so a file compiles
        # back through it. Keras skips a class whose compile is overridden
        # unless the class says how, as here (Keras 3.15's contract).
        super().compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)  # its slots, for the saved state

    def save_to_preset(self, preset_dir, *, max_shard_size=None):
        """Writes the model as a preset folder, which `from_preset(preset_dir)` builds back.

        keras-hub's layout: `config.json` (the model, Keras-serialised),
        `model.weights.h5` (its weights; sharded into `model.weights.json`
        and `model_NNNNN.weights.h5` files of at most `max_shard_size` GB
        when given) and `metadata.json` (`keras_version`,
        `ema_keras_version`, `parameter_count`, `date_saved`, the class count,
        names and palette). The folder must be new or empty; it appears
        whole or not at all. Share it with `ema_keras.models.upload_preset`.
        """
        preset_files.save_preset(self, preset_dir, max_shard_size=max_shard_size)


def segmenter_objectives(model, make_loss, aux_loss_weight=AUX_LOSS_WEIGHT):
    """The loss, loss weights and metrics a segmenter trains with, as `compile` takes them.

    One `make_loss()` per output; for a model with an auxiliary head (outputs
    `{"logits", "aux_logits"}`) the auxiliary loss weighs `aux_loss_weight`;
    mean IoU over the classes of the logits (their last axis), which the
    metric counts must match whatever the config said.
    """
    outputs = model.output
    if isinstance(outputs, dict):
        num_classes = int(outputs["logits"].shape[-1])
        return {
            "loss": {name: make_loss() for name in outputs},
            "loss_weights": {"logits": 1.0, "aux_logits": float(aux_loss_weight)},
            "metrics": {"logits": [SegmentationMeanIoU(num_classes)]},
        }
    num_classes = int(outputs.shape[-1])
    return {
        "loss": make_loss(),
        "loss_weights": None,
        "metrics": [SegmentationMeanIoU(num_classes)],
    }


def _build_backbone(backbone_class, preset_backbone, overrides, shared_args):
    """The backbone of a preset with `overrides` applied; removes the backbone's keys from them.

    `overrides["backbone"]` may be a built backbone (kept as is) or a dict of
    backbone arguments; keys of `overrides` that are backbone arguments go to
    the backbone, those in `shared_args` go to both backbone and head.
    """
    backbone = overrides.pop("backbone", None)
    backbone_args = backbone_class.config_arguments()
    backbone_overrides = {
        key: overrides.pop(key)
        for key in list(overrides)
        if key in backbone_args and key not in shared_args
    }
    if isinstance(backbone, keras.Model):
        if backbone_overrides:
            raise ValueError(
                f"Backbone arguments {sorted(backbone_overrides)} given with a built backbone."
            )
        return backbone
    shared = {key: value for key, value in overrides.items() if key in shared_args}
    return backbone_class(**{**preset_backbone, **(backbone or {}), **shared, **backbone_overrides})


def apply_classifier(x, num_classes, *, name, seed=None, dtype=None):
    """A 1x1 conv with bias from the features to the classes."""
    return keras.layers.Conv2D(
        num_classes,
        1,
        kernel_initializer=keras.initializers.GlorotUniform(layer_seed(seed, name)),
        dtype=dtype,
        name=name,
    )(x)
