"""SGD with the official EMANet parameter groups."""

import keras
from keras import ops

from ema_keras.serialization import PACKAGE

# The official code's SGD (EMANET.md): the VOC recipe's initial rate, momentum, L2 decay
# on kernels and the biases' learning-rate multiplier. TrainConfig's defaults read them.
OFFICIAL_LEARNING_RATE = 0.009
OFFICIAL_MOMENTUM = 0.9
OFFICIAL_L2_WEIGHT_DECAY = 1e-4
OFFICIAL_BIAS_LEARNING_RATE_MULTIPLIER = 2.0

# Parameter groups of the official code.
DECAYED = "decayed"  # convolution and dense kernels: L2 weight decay
BIAS = "bias"  # their biases: learning rate x bias_learning_rate_multiplier, no decay
PLAIN = "plain"  # everything else (BatchNorm gamma/beta, ...): plain SGD

# Names of the weight matrices of Keras layers (Conv*, Dense, EinsumDense: `kernel`;
# depthwise and separable convolutions).
_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def parameter_groups(model):
    """The group of each trainable variable of `model`, keyed by `variable.path`.

    Decided from each weight's place in its layer, not from names a runtime
    gives the variables: Keras' `variable.path` is "<layer path>/<name>",
    the same on every replica. A weight is `DECAYED` when it is a layer's
    kernel, `BIAS` when it is the `bias` of a layer that has a kernel,
    `PLAIN` otherwise (BatchNorm gamma and beta).
    """
    layers_with_kernels = {
        variable.path.rpartition("/")[0]
        for variable in model.variables
        if variable.name in _KERNEL_NAMES
    }

    def group(variable):
        if variable.name in _KERNEL_NAMES:
            return DECAYED
        if variable.name == "bias" and variable.path.rpartition("/")[0] in layers_with_kernels:
            return BIAS
        return PLAIN

    return {variable.path: group(variable) for variable in model.trainable_variables}


def _group_from_keras_name(variable):
    # The Keras variable's own name ("kernel", "bias"): unlike the name of the
    # tf.Variable that `update_step` receives ("conv/kernel/replica_1:0" on a
    # second replica), it is the same on every replica, worker and TPU core.
    if variable.name.endswith("kernel"):
        return DECAYED
    return BIAS if variable.name == "bias" else PLAIN


@keras.saving.register_keras_serializable(package=PACKAGE)
class ParameterGroupSGD(keras.optimizers.SGD):
    """SGD with momentum and the parameter groups of the official EMANet code.

    - convolution (and dense) kernels: L2 weight decay `l2_weight_decay`, added to
      the gradient before momentum, as PyTorch's `SGD(weight_decay=...)` does
      (Keras' own `weight_decay` is decoupled, a different update with momentum);
    - biases: learning rate times `bias_learning_rate_multiplier`, no decay;
    - BatchNorm gamma/beta and everything else: plain SGD, no decay.

    Give the groups with `set_parameter_groups(parameter_groups(model))` before
    training (the trainer does). The optimizer fixes each variable's group
    when it is built, in the order of its variable list, and `update_step`
    looks the group up by the variable's index, which Keras resolves to the
    same slot for every replica's copy: the update is the same on all of them.
    Without explicit groups, a variable's group follows its Keras name
    (`kernel`, `bias`), which is also the same on every replica.
    """

    def __init__(
        self,
        learning_rate=OFFICIAL_LEARNING_RATE,
        momentum=OFFICIAL_MOMENTUM,
        l2_weight_decay=OFFICIAL_L2_WEIGHT_DECAY,
        bias_learning_rate_multiplier=OFFICIAL_BIAS_LEARNING_RATE_MULTIPLIER,
        nesterov=False,
        name="parameter_group_sgd",
        **kwargs,
    ):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "ParameterGroupSGD applies `l2_weight_decay` to kernels only; "
                "do not pass Keras' decoupled `weight_decay` as well."
            )
        kwargs.pop("weight_decay", None)
        super().__init__(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs
        )
        if float(l2_weight_decay) < 0.0:
            raise ValueError(f"`l2_weight_decay` must be >= 0, got {l2_weight_decay}.")
        self.l2_weight_decay = float(l2_weight_decay)
        self.bias_learning_rate_multiplier = float(bias_learning_rate_multiplier)
        self._parameter_groups = None
        self._variable_groups = []

    def set_parameter_groups(self, groups):
        """`{variable.path: DECAYED | BIAS | PLAIN}`, e.g. `parameter_groups(model)`."""
        unknown = set(groups.values()) - {DECAYED, BIAS, PLAIN}
        if unknown:
            raise ValueError(f"Unknown parameter groups {sorted(unknown)}.")
        if self.built:
            raise RuntimeError("Set the parameter groups before the optimizer is built.")
        self._parameter_groups = dict(groups)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        groups = self._parameter_groups or {}
        self._variable_groups = [
            groups.get(variable.path) or _group_from_keras_name(variable) for variable in variables
        ]

    def variable_group(self, variable):
        """The group this optimizer applies to `variable` (a Keras or replica variable)."""
        # Keras 3.15 internal (no public route; tests/test_keras_internals.py).
        return self._variable_groups[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        group = self.variable_group(variable)
        gradient = ops.cast(gradient, variable.dtype)
        if group == DECAYED and self.l2_weight_decay:
            gradient = gradient + ops.cast(self.l2_weight_decay, variable.dtype) * variable
        if group == BIAS:
            learning_rate = learning_rate * self.bias_learning_rate_multiplier
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config.update(
            {
                "l2_weight_decay": self.l2_weight_decay,
                "bias_learning_rate_multiplier": self.bias_learning_rate_multiplier,
            }
        )
        return config
