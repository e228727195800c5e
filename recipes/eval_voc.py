"""Evaluates an EMANet on a split of any dataset: single scale, multi-scale + flip, sliding window.

    python recipes/eval_voc.py --model_dir runs/demo                 # best.keras, its data
    python recipes/eval_voc.py --model runs/voc/best.keras --data_dir /data/VOCdevkit \\
        --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip --output_json runs/voc/ms_flip.json
    python recipes/eval_voc.py --model_dir runs/cityscapes          # 769x769 windows

    python recipes/eval_voc.py --model_dir runs/voc --strategy mirrored --flip   # all GPUs

--dataset defaults to the training run's (train_config.json), else voc; Cityscapes
is scored by sliding window (--window, default the dataset's 769) and every table
names the dataset's classes.

Prints the per-class IoU table (markdown) and the mean IoU. The model runs with its
BatchNorms folded into its convolutions, in --precision: float32 (the default: the
scores of the paper's protocol), bfloat16, or auto (bfloat16 where the CPU has it
natively, kept only if its class maps agree with float32's on >= 99.5% of the pixels
of the first --precision_check_images images; see docs/evaluation.md). --strategy
shares the images out over devices (mirrored: all local GPUs, else two logical CPUs; on
JAX every local device) or machines (multi_worker, TF_CONFIG): each replica scores whole
images and the integer counts are summed, so the scores equal one device's.
"""

import json
import os

from absl import app, flags

from ema_keras import cli
from ema_keras.data import preflight_check, training_data
from ema_keras.inference.distributed_evaluation import evaluate_on_replicas
from ema_keras.inference.evaluation_setup import (
    checked_inference_model,
    class_names,
    evaluation_split,
    find_model_file,
)
from ema_keras.model_files import load_keras_model

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
cli.define_scales_flag(__name__, ["1.0"], "Inference scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75.")
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
    __name__,
    check_images_help="For bfloat16/auto: how many of the split's first images to compare "
    "with float32 on.",
)
cli.define_strategy_flag(
    __name__,
    "one_device",
    "Where to score: one_device, mirrored (all local GPUs, else 2 logical CPUs; on JAX every "
    "local device) or multi_worker (TensorFlow, TF_CONFIG). Each replica scores whole images; "
    "the result equals one device's.",
)
flags.DEFINE_string("output_json", None, "Write the result as JSON here.")
flags.DEFINE_string("output_markdown", None, "Write the per-class table here.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    for flag in ("output_json", "output_markdown"):
        folder = os.path.dirname(os.path.abspath(FLAGS[flag].value or "."))
        if not os.path.isdir(folder):
            raise app.UsageError(f"--{flag}: the folder {folder} does not exist; create it first.")
    # Before TensorFlow runs anything: mirrored on CPUs splits the CPU into logical devices.
    replicas = cli.evaluation_replicas(FLAGS.strategy)
    model_path = find_model_file(FLAGS.model, FLAGS.model_dir)
    data = evaluation_split(
        FLAGS.dataset, FLAGS.data_dir, FLAGS.split, FLAGS.num_classes, FLAGS.model_dir
    )
    # Every file checked (or its pass remembered in the run's folder) before the model loads.
    preflight_check(
        data.examples, num_classes=data.num_classes, cache_dir=FLAGS.model_dir,
        what=f"{data.split} split",
    )
    model = load_keras_model(model_path)
    with cli.precision_flag(FLAGS.precision):
        choice = checked_inference_model(
            model, FLAGS.precision, data.examples[: FLAGS.precision_check_images],
            data.num_classes, asked=cli.precision_asked(),
        )
    print(choice.describe())
    result = evaluate_on_replicas(
        choice.model,
        data.examples,
        replicas,
        num_classes=data.num_classes,
        scales=FLAGS.scales,
        flip=FLAGS.flip,
        window=FLAGS.window or data.window,
        stride=FLAGS.stride,
        pad_to=FLAGS.pad_to,
        class_names=class_names(choice.model, data.class_table),
    )
    table = result.to_markdown()
    print(
        f"{model_path} on {data.split} ({result.num_images} images, {replicas.describe()}), "
        f"{result.settings}:"
    )
    print(table)
    print(f"mIoU: {100 * result.mean_iou:.2f}")
    if not replicas.chief:
        return 0  # every worker has the result; the chief writes it
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as file:
            json.dump(result.to_json(), file, indent=2)
    if FLAGS.output_markdown:
        with open(FLAGS.output_markdown, "w") as file:
            file.write(table + "\n")


if __name__ == "__main__":
    cli.run(main)
