"""A model compiled for a recipe: the poly-decayed SGD, the masked (or OHEM) cross-entropy, mIoU.

Keras alone, no TensorFlow: what a trained `.keras` file names besides the
model (these optimizer, schedule, loss and metric classes) must import on every
backend, and compiling for a recipe is as portable as they are.
"""

from ema_keras.training.losses import MaskedSparseCrossEntropy, OHEMCrossEntropy
from ema_keras.training.metrics import SegmentationMeanIoU
from ema_keras.training.optimizers import ParameterGroupSGD, parameter_groups
from ema_keras.training.schedules import PolyDecay


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

    # The classes are the model's logits channels: a config may leave num_classes
    # to the dataset (None), and the metric must match what the model predicts.
    logits = model.output["logits"] if isinstance(model.output, dict) else model.output
    num_classes = int(logits.shape[-1])
    if isinstance(model.output, dict):
        loss = {name: make_loss() for name in model.output}
        loss_weights = {"logits": 1.0, "aux_logits": config.aux_loss_weight}
        metrics = {"logits": [SegmentationMeanIoU(num_classes)]}
    else:
        loss, loss_weights = make_loss(), None
        metrics = [SegmentationMeanIoU(num_classes)]
    model.compile(
        optimizer=optimizer,
        loss=loss,
        loss_weights=loss_weights,
        metrics=metrics,
        # The execution's choice when given (JAX: always XLA), else the setting.
        jit_compile=config.jit_compile if jit_compile is None else jit_compile,
    )
