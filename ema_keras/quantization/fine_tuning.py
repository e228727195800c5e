"""The QAT fine-tune: a few hundred steps of `fit` on the quantization-aware copy.

The copy's first batch sets every activation range; later batches move them
by moving average while the folded kernels and biases learn, through
straight-through gradients, to work on the int8 grid. Statistics do not
change (BatchNorms are folded, the EMA bases frozen), so a small learning
rate without warm-up is enough: the model starts where the float one ended.
"""

import keras

from ema_keras.losses import MaskedSparseCrossEntropy
from ema_keras.models.segmenter_base import segmenter_objectives
from ema_keras.quantization.qat_model import activation_quantizers, quantization_aware_model


def fine_tune(qat_model, dataset, steps, *, learning_rate=1e-3, momentum=0.9, verbose=0):
    """Trains `qat_model` (from `quantization_aware_model`) for `steps` batches of `dataset`.

    Args:
        qat_model: the quantization-aware copy; trained in place.
        dataset: batches of (raw RGB pixels (B, H, W, 3), labels (B, H, W)),
            255 ignored: the training pipeline's (`ema_keras.data`), repeated
            as needed, or any iterable `fit` takes.
        steps: number of optimizer steps (>= 1).
        learning_rate, momentum: SGD's (constant).
        verbose: `fit`'s verbosity.

    Returns:
        The `keras.callbacks.History` of the one epoch of `steps` steps.
    """
    if int(steps) < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}.")
    compile_for_fine_tuning(qat_model, learning_rate=learning_rate, momentum=momentum)
    return qat_model.fit(dataset, steps_per_epoch=int(steps), epochs=1, verbose=verbose)


def compile_for_fine_tuning(qat_model, *, learning_rate=1e-3, momentum=0.9):
    """Compiles `qat_model` as `fine_tune` trains it (call it in a strategy's scope to fit there).

    SGD at a constant rate; the segmenter's masked cross-entropy per output
    (the auxiliary head's weighted 0.4) and mean IoU of the logits.
    """
    if not activation_quantizers(qat_model):
        raise ValueError(
            f"{qat_model.name} has no activation quantizers: give the copy that "
            "`ema_keras.quantization.quantization_aware_model(model)` returns."
        )
    objectives = segmenter_objectives(qat_model, MaskedSparseCrossEntropy)
    qat_model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum),
        loss=objectives["loss"],
        loss_weights=objectives["loss_weights"],
        metrics=objectives["metrics"],
    )


class QuantizationAwareStage:
    """The recipes' `--qat_steps` stage, as `ema_keras.training.train(after_training=...)` runs it.

    The trainer calls `derive(model)` in its strategy's scope once float
    training ends, fits the copy for `steps` steps of the training data,
    scores it on the validation data and writes it as `file_name`.
    """

    file_name = "qat.keras"
    description = "Quantization-aware fine-tune"

    def __init__(self, steps, *, learning_rate=1e-4, momentum=0.9):
        if int(steps) < 1:
            raise ValueError(f"`steps` must be >= 1, got {steps}.")
        self.steps = int(steps)
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)

    def derive(self, model):
        """The quantization-aware copy of the trained `model`, compiled for its fine-tune."""
        qat_model = quantization_aware_model(model)
        compile_for_fine_tuning(
            qat_model, learning_rate=self.learning_rate, momentum=self.momentum
        )
        return qat_model
