"""TensorBoard logs worth opening: per-step scalars, the learning rate, validation images.

Keras' own callback writes the per-step scalars (`batch_loss`,
`batch_mean_iou`, ...) every `update_freq` steps under `logs/train`, and the
validation metrics against the step under `logs/validation`; ours adds what
it does not log per step: the learning rate of the schedule, and at each
validation a few validation images next to their predicted and true masks in
the VOC colours. Both are given to `fit` on the chief only.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from ema_keras.models.outputs import main_logits
from ema_keras.visualize import colorize, label_colours

NUM_VALIDATION_IMAGES = 4
TRAIN_RUN = "train"  # Keras' subfolders of the log directory
VALIDATION_RUN = "validation"


class StepTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, its per-step scalars numbered by the optimizer's step.

    Two fixes to Keras 3.15's callback with an integer `update_freq`:
    - it counts batches from 0 at every `fit`; a resumed run goes on from its
      checkpoint's step instead, so its curves continue those of the first run;
    - it leaves "record only every `update_freq` steps" in force during the
      whole training, which silently drops the per-epoch and validation
      summaries of an epoch that does not end on such a step.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = int(self.model.optimizer.iterations.numpy())

    def on_test_end(self, logs=None):
        with tf.summary.record_if(True):
            super().on_test_end(logs)

    def on_epoch_end(self, epoch, logs=None):
        with tf.summary.record_if(True):
            super().on_epoch_end(epoch, logs)


class LearningRateAndImages(keras.callbacks.Callback):
    """Writes the learning rate every `every_steps` steps, validation images at each validation.

    Args:
      log_dir: the TensorBoard log directory (the one given to Keras' callback).
      every_steps: the step interval of the learning rate, as Keras' `update_freq`.
      validation_images: an optional dataset of (raw pixel images, labels)
        batches as `ema_keras.data.pipeline.eval_dataset` makes them (of the
        same size, e.g. with `pad_to`); its first batch is shown, each image
        with its prediction and its ground truth to the right.
      colours: a `ema_keras.visualize.LabelColours` drawing the masks (default:
        the model's own classes' colours, VOC's where it has none).
    """

    def __init__(self, log_dir, *, every_steps, validation_images=None, colours=None):
        super().__init__()
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}")
        self.log_dir = log_dir
        self.every_steps = int(every_steps)
        self.validation_images = validation_images
        self.colours = colours
        self._batch = None
        self._step = 0
        self._writers = {}

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(os.path.join(self.log_dir, run))
        return self._writers[run]

    def on_train_begin(self, logs=None):
        # Counted here rather than read from the optimizer at every batch (a device sync).
        self._step = int(self.model.optimizer.iterations.numpy())
        if self.validation_images is not None and self._batch is None:
            images, labels = next(iter(self.validation_images))
            self._batch = (images[:NUM_VALIDATION_IMAGES], labels[:NUM_VALIDATION_IMAGES])

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every_steps == 0:
            # The schedule at the optimizer's current iteration, as Keras logs it per epoch.
            learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            with self._writer(TRAIN_RUN).as_default(), tf.summary.record_if(True):
                tf.summary.scalar("learning_rate", learning_rate, step=self._step)

    def on_epoch_end(self, epoch, logs=None):
        if self._batch is None or not any(name.startswith("val_") for name in logs or {}):
            return
        images, labels = self._batch
        logits = main_logits(self.model(images, training=False))
        predictions = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        # Every validation, whether or not it falls on a step Keras' callback records.
        with self._writer(VALIDATION_RUN).as_default(), tf.summary.record_if(True):
            tf.summary.image(
                "image_prediction_truth",
                validation_panels(
                    images, predictions, labels, self.colours or label_colours("voc", self.model)
                ),
                step=self._step,
                max_outputs=NUM_VALIDATION_IMAGES,
                description=(
                    "Validation images, predicted masks and ground truth (the classes' colours)."
                ),
            )

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def validation_panels(images, predictions, labels, colours=None):
    """uint8 (B, H, 3 W, 3): each image with its predicted and true masks to the right.

    The masks are drawn in `colours` (a `visualize.LabelColours`; default VOC's).
    """
    pixels = np.asarray(images)  # raw pixels, as eval_dataset yields them for today's models
    pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    colours = colours or label_colours("voc")
    masks = [colorize(np.asarray(m), colours=colours) for m in (predictions, labels)]
    return np.concatenate([pixels, *masks], axis=2)
