"""Evaluates an EMANet on a split of any dataset: single scale, multi-scale + flip, sliding window.

    python recipes/eval_voc.py --model_dir runs/demo                 # best.keras, its data
    python recipes/eval_voc.py --model runs/voc/best.keras --data_dir /data/VOCdevkit \\
        --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip --output_json runs/voc/ms_flip.json
    python recipes/eval_voc.py --model_dir runs/cityscapes          # 769x769 windows

--dataset defaults to the training run's (train_config.json), else voc; Cityscapes
is scored by sliding window (--window, default the dataset's 769) and every table
names the dataset's classes.

Prints the per-class IoU table (markdown) and the mean IoU. The model runs with its
BatchNorms folded into its convolutions, in --precision: float32 (the default: the
scores of the paper's protocol), bfloat16, or auto (bfloat16 where the CPU has it
natively, kept only if its class maps agree with float32's on >= 99.5% of the pixels
of the first --precision_check_images images; see docs/evaluation.md).
"""

import json
import os
import tempfile

from absl import app, flags

from ema_keras import cli
from ema_keras.data import pipeline, preflight_check, training_data
from ema_keras.inference.evaluation import evaluate
from ema_keras.inference.multi_scale import predict_probabilities
from ema_keras.inference.precision import inference_model
from ema_keras.model_files import load_keras_model
from ema_keras.models.class_info import class_info
from ema_keras.training import load_config, trainer

flags.DEFINE_string(
    "model", None, "A .keras model file (default: best.keras or last.keras of --model_dir)."
)
flags.DEFINE_string("model_dir", None, "A training folder (its model and its dataset).")
flags.DEFINE_string(
    "dataset",
    None,
    f"Dataset of --data_dir: one of {', '.join(training_data.dataset_names())} (default: the "
    "training's, else voc).",
)
flags.DEFINE_string(
    "data_dir", None, "The dataset's folder, e.g. VOCdevkit (default: the training's)."
)
flags.DEFINE_string(
    "split", None, "Split to score (default: the training's validation split, else val)."
)
flags.DEFINE_integer("num_classes", None, "Classes (default: the training's, else 21).")
flags.DEFINE_list("scales", ["1.0"], "Inference scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75.")
flags.DEFINE_boolean("flip", False, "Add horizontally flipped predictions.")
flags.DEFINE_integer(
    "window",
    None,
    "Sliding-window size in pixels (default: the dataset's published protocol: 769 for "
    "cityscapes, whole images otherwise).",
)
flags.DEFINE_integer("stride", None, "Sliding-window stride (default: 2/3 of the window).")
flags.DEFINE_integer(
    "pad_to",
    None,
    "Pad every image to NxN (the mean; label 255 there) before predicting, as the validation "
    "during training does with --eval_pad_size N: reproduces summary.json's val_mean_iou for "
    "last.keras. Default: each image at its own size (the paper's protocol).",
)
cli.define_precision_flags(
    "For bfloat16/auto: how many of the split's first images to compare with float32 on."
)
flags.DEFINE_string("output_json", None, "Write the result as JSON here.")
flags.DEFINE_string("output_markdown", None, "Write the per-class table here.")
FLAGS = flags.FLAGS


def resolve_model_path(model, model_dir):
    if model:
        return model
    if not model_dir:
        raise app.UsageError("Give --model or --model_dir.")
    for name in (trainer.BEST_MODEL_FILE, trainer.LAST_MODEL_FILE):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"No best.keras or last.keras in {model_dir!r}.")


def resolve_data(dataset_name, data_dir, model_dir, num_classes, split):
    """(examples, class table, dataset name, split), from the flags or the training run.

    Conversions (`.mat` labels, your own data's masks) go under --model_dir,
    kept like training's, else into a temporary folder; a run's seeded split
    of your own data is the one its splits.json recorded.
    """
    config = load_config(model_dir) if model_dir else None
    if split is None:
        split = config.val_split if config else "val"
    if dataset_name is None:
        dataset_name = config.dataset if config else "voc"
    if dataset_name not in training_data.dataset_names():
        names = ", ".join(training_data.dataset_names())
        raise app.UsageError(f"--dataset {dataset_name!r} is unknown; use one of: {names}.")
    if data_dir is None:
        if config is None:
            raise app.UsageError("Give --data_dir (or --model_dir of a training run).")
        data_dir = config.data_dir or os.path.join(model_dir, training_data.DEMO_FOLDER)
    if num_classes is None and config is not None:
        num_classes = config.num_classes
    examples, table = training_data.resolve_split(
        dataset_name, data_dir, split, num_classes=num_classes,
        cache_dir=model_dir or tempfile.mkdtemp(), run_dir=model_dir,
        val_fraction=config.val_fraction if config else 0.1, seed=config.seed if config else 0,
    )
    return examples, table, dataset_name, split


def class_names(model, table):
    """The names the model file carries (trained on them), else the data's class table's."""
    info = class_info(model)
    if info is not None and len(info.names) == table.num_classes:
        return list(info.names)
    return list(table.names)


def choose_precision(model, precision, check_examples, num_classes):
    """The folded inference model in `precision`, checked on `check_examples`; prints the choice."""
    if precision == "float32":
        check = None
    else:
        images = [
            image
            for image, _ in pipeline.eval_dataset(
                check_examples, batch_size=1, num_classes=num_classes
            )
        ]

        def check(candidate):
            return [predict_probabilities(candidate, image)[0].argmax(-1) for image in images]

    with cli.precision_flag(precision):
        choice = inference_model(model, precision, check=check)
    print(choice.describe())
    return choice.model


def main(argv):
    del argv
    try:
        scales = tuple(float(s) for s in FLAGS.scales)
    except ValueError:
        raise app.UsageError(
            f"--scales takes numbers, e.g. 0.5,1.0,1.5; got {','.join(FLAGS.scales)}"
        ) from None
    for flag in ("output_json", "output_markdown"):
        folder = os.path.dirname(os.path.abspath(FLAGS[flag].value or "."))
        if not os.path.isdir(folder):
            raise app.UsageError(f"--{flag}: the folder {folder} does not exist; create it first.")
    model_path = resolve_model_path(FLAGS.model, FLAGS.model_dir)
    examples, table, dataset_name, split = resolve_data(
        FLAGS.dataset, FLAGS.data_dir, FLAGS.model_dir, FLAGS.num_classes, FLAGS.split
    )
    num_classes = table.num_classes
    # Every file checked (or its pass remembered in the run's folder) before the model loads.
    preflight_check(
        examples, num_classes=num_classes, cache_dir=FLAGS.model_dir, what=f"{split} split"
    )
    model = load_keras_model(model_path)
    model = choose_precision(
        model, FLAGS.precision, examples[: FLAGS.precision_check_images],
        num_classes,
    )
    result = evaluate(
        model,
        examples,
        num_classes=num_classes,
        scales=scales,
        flip=FLAGS.flip,
        window=FLAGS.window or training_data.eval_window(dataset_name),
        stride=FLAGS.stride,
        pad_to=FLAGS.pad_to,
        class_names=class_names(model, table),
    )
    table = result.to_markdown()
    print(f"{model_path} on {split} ({result.num_images} images), {result.settings}:")
    print(table)
    print(f"mIoU: {100 * result.mean_iou:.2f}")
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as file:
            json.dump(result.to_json(), file, indent=2)
    if FLAGS.output_markdown:
        with open(FLAGS.output_markdown, "w") as file:
            file.write(table + "\n")


if __name__ == "__main__":
    cli.run(main)
