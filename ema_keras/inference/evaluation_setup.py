"""What an evaluation of a trained model needs before it scores: the model file, the split, the
precision.

    model_path = find_model_file(model, model_dir)            # best.keras, else last.keras
    split = evaluation_split(dataset, data_dir, split, num_classes, model_dir)
    choice = checked_inference_model(model, "auto", split.examples[:2], split.num_classes)

Whatever the caller leaves unset (None) is the training run's, read from
`model_dir`'s train_config.json: its dataset, data folder, validation split and
class count; without a run, voc and its val split. `recipes/eval_voc.py` is
these calls, `ema_keras.inference.evaluate` and its printing.
"""

import dataclasses
import os
import tempfile

from ema_keras.data import pipeline, training_data
from ema_keras.data.class_table import ClassTable
from ema_keras.inference.multi_scale import predict_probabilities
from ema_keras.inference.precision import inference_model
from ema_keras.models.class_info import class_info
from ema_keras.training import run_record, trainer
from ema_keras.training.errors import SettingsError


def find_model_file(model=None, model_dir=None):
    """`model`, else the best (else last) model file of the training folder `model_dir`."""
    if model:
        return model
    if not model_dir:
        raise SettingsError("Give --model or --model_dir.")
    for name in (trainer.BEST_MODEL_FILE, trainer.LAST_MODEL_FILE):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"No best.keras or last.keras in {model_dir!r}.")


@dataclasses.dataclass(frozen=True)
class EvaluationSplit:
    examples: list  # what the tf.data graph reads (.mat labels and masks converted)
    class_table: ClassTable
    dataset: str
    split: str

    @property
    def num_classes(self):
        return self.class_table.num_classes

    @property
    def window(self):
        """The sliding window of the dataset's published evaluation (None: whole images)."""
        return training_data.eval_window(self.dataset)


def evaluation_split(dataset=None, data_dir=None, split=None, num_classes=None, model_dir=None):
    """The examples and class table of the split to score; an `EvaluationSplit`.

    Unset values are the training run's in `model_dir` (see the module
    docstring). Conversions (`.mat` labels, your own data's masks, by
    `training_data.resolve_split`) go under `model_dir`, kept like training's,
    else into a temporary folder; a run's seeded split of your own data is the
    one its splits.json recorded. Nothing is checked yet (`preflight_check`).
    """
    config = run_record.load_config(model_dir) if model_dir else None
    if split is None:
        split = config.val_split if config else "val"
    if dataset is None:
        dataset = config.dataset if config else "voc"
    if dataset not in training_data.dataset_names():
        names = ", ".join(training_data.dataset_names())
        raise SettingsError(f"--dataset {dataset!r} is unknown; use one of: {names}.")
    if data_dir is None:
        if config is None:
            raise SettingsError("Give --data_dir (or --model_dir of a training run).")
        data_dir = config.data_dir or os.path.join(model_dir, training_data.DEMO_FOLDER)
    if num_classes is None and config is not None:
        num_classes = config.num_classes
    examples, table = training_data.resolve_split(
        dataset, data_dir, split, num_classes=num_classes,
        cache_dir=model_dir or tempfile.mkdtemp(), run_dir=model_dir,
        val_fraction=config.val_fraction if config else 0.1, seed=config.seed if config else 0,
    )
    return EvaluationSplit(examples, table, dataset, split)


def class_names(model, table):
    """The names the model file carries (trained on them), else the data's class table's."""
    info = class_info(model)
    if info is not None and len(info.names) == table.num_classes:
        return list(info.names)
    return list(table.names)


def checked_inference_model(model, precision, check_examples, num_classes, *, asked=True):
    """`inference_model` in `precision`, its agreement checked on `check_examples` (whole
    images at scale 1); an `InferenceChoice`. `asked`: see `inference_model`."""
    if precision == "float32":
        return inference_model(model, precision, asked=asked)
    images = [
        image
        for image, _ in pipeline.eval_dataset(check_examples, batch_size=1, num_classes=num_classes)
    ]

    def check(candidate):
        return [predict_probabilities(candidate, image)[0].argmax(-1) for image in images]

    return inference_model(model, precision, check=check, asked=asked)
