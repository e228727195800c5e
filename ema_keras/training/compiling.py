"""A model compiled for a recipe: the poly-decayed SGD, the masked (or OHEM) cross-entropy, mIoU.

Keras alone, no TensorFlow: what a trained `.keras` file names besides the
model (these optimizer, schedule, loss and metric classes) must import on every
backend, and compiling for a recipe is as portable as they are.
"""

from ema_keras.losses import MaskedSparseCrossEntropy, OHEMCrossEntropy
from ema_keras.models.segmenter_base import segmenter_objectives
from ema_keras.optimizers import ParameterGroupSGD, parameter_groups
from ema_keras.schedules import PolyDecay


def compile_model(model, config, jit_compile=None, class_weights=None):
    """Compiles `model` for `config`'s recipe; `class_weights` (one float per class,
    `ema_keras.data.class_weights.resolve_class_weights`) weight its cross-entropies."""
    schedule = PolyDecay(
        config.learning_rate,
        config.steps,
        power=config.poly_power,
        warmup_steps=config.warmup_steps,
    )
    optimizer = ParameterGroupSGD(
        learning_rate=schedule,
        momentum=config.momentum,
        l2_weight_decay=config.weight_decay,
        bias_learning_rate_multiplier=config.bias_learning_rate_multiplier,
    )
    optimizer.set_parameter_groups(parameter_groups(model))

    def make_loss():
        if config.ohem:
            return OHEMCrossEntropy(class_weights=class_weights)
        return MaskedSparseCrossEntropy(class_weights=class_weights)

    model.compile(
        optimizer=optimizer,
        **segmenter_objectives(model, make_loss, config.aux_loss_weight),
        # The execution's choice when given (JAX: always XLA), else the setting.
        jit_compile=config.jit_compile if jit_compile is None else jit_compile,
    )
