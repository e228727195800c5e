"""Time from the start of a training run to the end of its first step.

Building the model, tracing the train step (once per replica under a
strategy) and compiling it all happen before the first step ends, so this is
the wait a user sees before training is under way.
"""

import time

import keras
from absl import logging


class FirstStepTimer(keras.callbacks.Callback):
    """Logs, and keeps in `seconds`, how long after `start` the first batch ended."""

    def __init__(self, start=None):
        super().__init__()
        self.start = time.perf_counter() if start is None else start
        self.seconds = None

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start
            logging.info("First training step done %.1f s after the start.", self.seconds)
