"""SegmenterBase: what every EMANet segmenter class shares, the trained file's contract.

`compile()` with the official training setup as its defaults, `save_to_preset`,
and the names of the layers that output the classes. `EMANetImageSegmenter`
is the segmenter; `EMANet` and `MobileEMANet`, the layout of files saved by
0.1, are kept on it so that those files load and train as before.
"""

import keras

from ema_keras.layers.conv_bn import layer_seed
from ema_keras.losses import AUX_LOSS_WEIGHT, MaskedSparseCrossEntropy
from ema_keras.metrics import SegmentationMeanIoU
from ema_keras.models import preset_files
from ema_keras.models.functional_model import FunctionalModel
from ema_keras.optimizers import OFFICIAL_LEARNING_RATE, ParameterGroupSGD, parameter_groups
from ema_keras.schedules import PolyDecay


class SegmenterBase(FunctionalModel):
    """Base of the EMANet segmenter classes: compiling, saving as a preset.

    A subclass sets `architecture` (for `EMANet` and `MobileEMANet`: the
    preset architecture its layout matches; None for a segmenter of any)
    and `classifier_layer_names` (its layers that may output the classes).
    """

    architecture = None
    # The layers whose outputs are the classes (those present in a model): all
    # that fine-tuning to new classes re-initialises.
    classifier_layer_names = ()

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


def apply_classifier(x, num_classes, *, name, seed=None, dtype=None):
    """A 1x1 conv with bias from the features to the classes."""
    return keras.layers.Conv2D(
        num_classes,
        1,
        kernel_initializer=keras.initializers.GlorotUniform(layer_seed(seed, name)),
        dtype=dtype,
        name=name,
    )(x)
