"""Learning-rate schedules."""

import keras
from keras import ops

from ema_keras.serialization import PACKAGE

# The official schedule's power (EMANET.md); TrainConfig's default reads it.
OFFICIAL_POLY_POWER = 0.9


@keras.saving.register_keras_serializable(package=PACKAGE)
class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`lr = (initial - end) * (1 - step / decay_steps) ** power + end`, with optional warmup.

    The official EMANet schedule is PolyDecay(0.009, 30000, power=0.9). With
    `warmup_steps`, the rate rises linearly from `warmup_start_ratio * initial`
    to the poly curve's value over the first steps. The step is read from the
    optimizer's iteration counter, so a resumed run continues the same curve.
    """

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        power=OFFICIAL_POLY_POWER,
        end_learning_rate=0.0,
        warmup_steps=0,
        warmup_start_ratio=0.1,
        name="poly_decay",
    ):
        if int(decay_steps) < 1:
            raise ValueError(f"`decay_steps` must be >= 1, got {decay_steps}.")
        if float(initial_learning_rate) <= 0.0:
            raise ValueError(f"`initial_learning_rate` must be > 0, got {initial_learning_rate}.")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.warmup_start_ratio = float(warmup_start_ratio)
        self.name = name

    def __call__(self, step):
        step = ops.minimum(ops.cast(step, "float32"), float(self.decay_steps))
        # (steps - step) / steps rather than 1 - step / steps: exact in float32
        # near the end of the schedule, where 1 - 29999/30000 loses digits.
        remaining = (float(self.decay_steps) - step) / float(self.decay_steps)
        rate = (self.initial_learning_rate - self.end_learning_rate) * ops.power(
            remaining, self.power
        ) + self.end_learning_rate
        if self.warmup_steps > 0:
            progress = ops.minimum(step / float(self.warmup_steps), 1.0)
            factor = self.warmup_start_ratio + (1.0 - self.warmup_start_ratio) * progress
            rate = rate * factor
        return rate

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
            "warmup_steps": self.warmup_steps,
            "warmup_start_ratio": self.warmup_start_ratio,
            "name": self.name,
        }
