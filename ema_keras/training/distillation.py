"""Teacher-student training: channel-wise distillation of a trained model's logits.

`--teacher` names a trained EMANet that predicts the student's classes: a `.keras`
file (a run's `best.keras`), a preset folder written by `save_to_preset`,
`hf://...`, `kaggle://...`, or a preset name that carries weights. The trainer
loads it once, in the execution's scope (a copy per replica under `mirrored`,
replicated under JAX's `DataParallel`), frozen: not trainable, and called with
`training=False`, so its BatchNorm statistics and EMA bases stay as trained.

The term enters through Keras' public hook for it, `Model.compute_loss(x, y, y_pred,
sample_weight, training)`, which the train step of every backend calls with the
batch's images (inside each tf.distribute replica, inside JAX's stateless step,
in torch's eager step): the student's compiled loss, plus, in training steps,
`ChannelWiseDistillation` of the teacher's logits on the same images against
the student's. Validation losses stay the task's, comparable with runs without a
teacher. The term goes through `keras.losses.Loss.__call__`, so it is averaged
over a replica's batch and scaled for tf.distribute as the task loss is.

The teacher is held by that function alone, never by the student: checkpoints,
`best.keras` and `last.keras` hold the student only and load with
`keras.models.load_model` (after `import ema_keras`) without it. On JAX the
teacher's weights are constants of the compiled step, since they are not part
of the state the student's step carries.
"""

import os

from absl import logging
from keras import ops

from ema_keras.losses import ChannelWiseDistillation
from ema_keras.model_files import load_keras_model, read_keras_config
from ema_keras.models import build_preset, expects_raw_pixels, get_preset, is_preset_location
from ema_keras.models.outputs import main_logits
from ema_keras.models.preset_files import CONFIG_FILE, SHARDED_WEIGHTS_FILE, WEIGHTS_FILE
from ema_keras.models.preset_files import read_json as read_preset_json
from ema_keras.models.presets import is_preset_name, preset_weights
from ema_keras.training.errors import SettingsError


def refuse_unfit_teacher(config, num_classes):
    """Raises `SettingsError` when `config.teacher` cannot teach a model of `num_classes`.

    Reads the teacher's configuration only (no weights, no model built): it
    must exist, carry weights and predict `num_classes` classes.
    """
    if not config.teacher:
        return
    teacher_classes = _teacher_classes(config.teacher)
    if teacher_classes is not None and teacher_classes != num_classes:
        raise SettingsError(
            f"--teacher {config.teacher} predicts {teacher_classes} classes, the data has "
            f"{num_classes}: the teacher must predict the student's classes, in its order."
        )


def _teacher_classes(teacher):
    """The class count `teacher`'s configuration states (None if it states none)."""
    if is_preset_name(teacher):
        if preset_weights(teacher) is None:
            raise SettingsError(
                f"--teacher {teacher} is a configuration without weights: give a trained "
                "model (a run's best.keras or a preset folder with weights)."
            )
        return get_preset(teacher).get("num_classes")
    if is_preset_location(teacher):
        local = os.path.isdir(teacher)
        if local and not any(
            os.path.isfile(os.path.join(teacher, name))
            for name in (WEIGHTS_FILE, SHARDED_WEIGHTS_FILE)
        ):
            raise SettingsError(
                f"--teacher {teacher} is a preset without weights ({WEIGHTS_FILE}): give a "
                "trained model."
            )
        config = read_preset_json(teacher, CONFIG_FILE)
    elif os.path.isfile(teacher):
        config = read_keras_config(teacher)
    else:
        raise SettingsError(
            f"--teacher {teacher} is neither a .keras file, a preset folder, hf:// or kaggle:// "
            "preset, nor a preset name."
        )
    num_classes = config.get("config", {}).get("num_classes") if isinstance(config, dict) else None
    return int(num_classes) if isinstance(num_classes, int) else None


def load_teacher(teacher):
    """The model `teacher` names (a `.keras` file or a preset with weights), frozen."""
    if is_preset_name(teacher) or is_preset_location(teacher):
        model = build_preset(teacher, load_weights=True)
    else:
        model = load_keras_model(teacher)
    model.trainable = False
    return model


def add_teacher(student, teacher, *, temperature, weight):
    """Makes the training steps of `student` add channel-wise distillation from `teacher`.

    Call it after `student.compile(...)`, in the scope the student was built
    in. `teacher` must predict the student's classes and take the same input;
    its logits are resized (bilinearly) to the student's when their sizes differ.
    """
    student_classes = main_logits(student.output).shape[-1]
    teacher_classes = main_logits(teacher.output).shape[-1]
    if teacher_classes != student_classes:
        raise SettingsError(
            f"--teacher predicts {teacher_classes} classes, the student {student_classes}."
        )
    if expects_raw_pixels(teacher) != expects_raw_pixels(student):
        raise SettingsError(
            "--teacher and the student take different inputs (raw pixels and ImageNet-"
            "normalised images): give a teacher built like the student."
        )
    teacher.trainable = False
    distillation = ChannelWiseDistillation(temperature=temperature, weight=weight)
    task_loss = student.compute_loss

    def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = task_loss(x, y, y_pred, sample_weight, training=training)
        if not training:
            return loss
        student_logits = main_logits(y_pred)
        teacher_logits = ops.stop_gradient(main_logits(teacher(x, training=False)))
        teacher_logits = _resized_like(teacher_logits, student_logits)
        return loss + distillation(teacher_logits, student_logits)

    # An attribute of the instance, not a Keras-tracked one: a function, so
    # neither saving nor checkpoints see the teacher it holds.
    student.compute_loss = compute_loss


def _resized_like(teacher_logits, student_logits):
    size = tuple(student_logits.shape[1:3])
    if None in size or tuple(teacher_logits.shape[1:3]) == size:
        return teacher_logits
    return ops.image.resize(teacher_logits, size, interpolation="bilinear")


def distil_into(student, config):
    """Loads `config.teacher` and adds its distillation to `student` (see `add_teacher`)."""
    teacher = load_teacher(config.teacher)
    add_teacher(
        student, teacher, temperature=config.distill_temperature, weight=config.distill_weight
    )
    logging.info(
        "Distilling %s into the model: channel-wise, temperature %g, weight %g.",
        config.teacher, config.distill_temperature, config.distill_weight,
    )
    return teacher
