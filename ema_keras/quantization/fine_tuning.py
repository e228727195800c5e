"""The QAT fine-tune: a few hundred steps of `fit` on the quantization-aware copy.

The copy's first batch sets every activation range; later batches move them
by moving average while the folded kernels and biases learn, through
straight-through gradients, to work on the int8 grid. Statistics do not
change (BatchNorms are folded, the EMA bases frozen), so a small learning
rate without warm-up is enough: the model starts where the float one ended.
"""

import keras

from ema_keras.losses import MaskedSparseCrossEntropy
from ema_keras.quantization.qat_model import activation_quantizers


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
    if not activation_quantizers(qat_model):
        raise ValueError(
            f"{qat_model.name} has no activation quantizers: give the copy that "
            "`ema_keras.quantization.quantization_aware_model(model)` returns."
        )
    qat_model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum),
        loss=MaskedSparseCrossEntropy(),
    )
    return qat_model.fit(dataset, steps_per_epoch=int(steps), epochs=1, verbose=verbose)
