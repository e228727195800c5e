"""SGD with the official EMANet parameter groups."""

import keras
from keras import ops


def _short_name(variable):
    # On the TF backend `update_step` receives the underlying tf.Variable,
    # named like "conv/kernel:0"; a Keras variable is named "kernel".
    return variable.name.split(":")[0].split("/")[-1]


def _is_kernel(variable):
    return _short_name(variable).endswith("kernel")


def _is_bias(variable):
    return _short_name(variable) == "bias"


@keras.saving.register_keras_serializable(package="ema_keras")
class ParameterGroupSGD(keras.optimizers.SGD):
    """SGD with momentum and the parameter groups of the official EMANet code.

    - convolution (and dense) kernels: L2 weight decay `l2_weight_decay`, added to
      the gradient before momentum, as PyTorch's `SGD(weight_decay=...)` does
      (Keras' own `weight_decay` is decoupled, a different update with momentum);
    - biases: learning rate times `bias_learning_rate_multiplier`, no decay;
    - BatchNorm gamma/beta and everything else: plain SGD, no decay.

    Variables are told apart by their names (`kernel`, `bias`), which every
    Keras convolution and dense layer uses.
    """

    def __init__(
        self,
        learning_rate=0.009,
        momentum=0.9,
        l2_weight_decay=1e-4,
        bias_learning_rate_multiplier=2.0,
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

    def update_step(self, gradient, variable, learning_rate):
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay and _is_kernel(variable):
            gradient = gradient + ops.cast(self.l2_weight_decay, variable.dtype) * variable
        if _is_bias(variable):
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
