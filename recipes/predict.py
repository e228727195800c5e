"""Segments images: a label map (palette PNG) and a colour overlay (JPEG) per image.

    python recipes/predict.py --model runs/demo/best.keras \\
        --inputs photo.jpg,more_photos/ --output_dir predictions/ [--attention_maps]

For each image, --output_dir gets <stem>.png (class ids in the model's palette)
and <stem>_overlay.jpg (the classes blended over the image, with a legend of
the classes it shows; --nolegend: without). The colours and class names are
those the model was trained with (every model ema-keras trains carries them);
a model without them takes --dataset's (default: the dataset of the training
run the model file sits in, else VOC's).

Folders are read recursively; an image in a subfolder has its outputs in the
same subfolder of --output_dir. JPEG, PNG, WebP, TIFF, BMP and GIF (first
frame) are read, EXIF orientation applied; alpha is dropped and 16-bit images
scaled to 8 bits, each with a one-line note. Unreadable files are listed all
at once, before anything is written, and skipped; the summary counts what was
written, converted and skipped. Images sharing a stem (a.jpg, a.png) keep their
extension in the name: a_jpg.png, a_jpg_overlay.jpg; the same file name in two
folders given also gets its folder's name: day1_a_jpg.png.
With --attention_maps, <stem>_attention.png too: the EMA unit's
--attention_bases bases of largest mass, each as a heat map of its
responsibilities over the image, largest first (whole image, scale 1).

The model runs with its BatchNorms folded into its convolutions, in --precision
(float32, bfloat16, or auto: bfloat16 where the CPU has it natively and its label
maps agree with float32's on >= 99.5% of the pixels of the first
--precision_check_images inputs; below that, bfloat16 is refused and auto keeps
float32).

Nothing given is overwritten: --output_dir must hold none of the inputs, and a
file already there is only replaced if predict wrote it. Every output path is
checked before anything is written. Exit status: 0 done (unreadable images
skipped, and listed); 1 a missing or unreadable model, a missing input, or no
readable image at all; 2 outputs refused (nothing written).

--engine ray runs a pool of model replicas on Ray Data instead (pip install
'ema-keras[ray]'; one per GPU, or --num_workers CPU workers), for large
collections: --inputs may also be globs and manifests (.txt: one path per
line), every file is written atomically, a re-run skips the images already
complete, and unreadable images are listed in <output_dir>/prediction_report.jsonl
while the others go on (see docs/evaluation.md). Attention maps are not available
there; --probabilities adds <stem>_probabilities.npz.
"""

import os

from absl import app, flags

from ema_keras import cli
from ema_keras.data.datasets import get_dataset
from ema_keras.data.errors import DataError
from ema_keras.data.photos import load_photo
from ema_keras.data.training_data import colour_dataset
from ema_keras.inference.attention_maps import DEFAULT_NUM_BASES, MissingAttentionUnitError
from ema_keras.inference.bulk_prediction import RayNotInstalledError, predict_with_ray
from ema_keras.inference.precision import inference_model
from ema_keras.inference.prediction import (
    OutputConflictError,
    plan_predictions,
    predict_label_map,
    read_inputs,
    write_predictions,
)
from ema_keras.model_files import load_keras_model
from ema_keras.training import load_config
from ema_keras.visualize import label_colours

flags.DEFINE_string("model", None, "A .keras model file.", required=True)
flags.DEFINE_list("inputs", None, "Image files and/or folders.", required=True)
flags.DEFINE_string(
    "output_dir",
    None,
    "Folder (holding no input) for <stem>.png label maps and <stem>_overlay.jpg JPEG overlays.",
    required=True,
)
flags.DEFINE_string(
    "dataset",
    None,
    "Whose class colours and names the label maps and overlays use when the model carries "
    "none (voc, cityscapes, ...; default: the dataset of the training run the model file "
    "sits in, else voc).",
)
flags.DEFINE_boolean("legend", True, "Name the classes shown beside each overlay.")
cli.define_scales_flag(__name__, ["1.0"], "Inference scales.")
flags.DEFINE_boolean("flip", False, "Add horizontally flipped predictions.")
flags.DEFINE_integer("window", None, "Sliding-window size (default: whole image).")
flags.DEFINE_boolean(
    "attention_maps",
    False,
    "Also write <stem>_attention.png: the EMA unit's bases of largest mass as heat maps "
    "over the image (computed on the whole image at scale 1).",
)
flags.DEFINE_integer(
    "attention_bases",
    DEFAULT_NUM_BASES,
    "How many bases --attention_maps shows per image, largest mass first (at most the "
    "model's number of bases).",
    lower_bound=1,
)
cli.define_precision_flags(
    __name__,
    check_images_help="For bfloat16/auto: how many of the inputs to compare with float32 on.",
)
flags.DEFINE_enum(
    "engine",
    "local",
    ["local", "ray"],
    "local: this process, one image after another; ray: a pool of model replicas on Ray Data "
    "(pip install 'ema-keras[ray]'), resumable, for large collections.",
)
flags.DEFINE_integer(
    "num_workers",
    None,
    "--engine ray: model replicas (default: one per GPU, else one per 4 CPUs).",
    lower_bound=1,
)
flags.DEFINE_boolean(
    "probabilities", False, "--engine ray: also write <stem>_probabilities.npz (softmax, float16)."
)
FLAGS = flags.FLAGS
# Outputs refused (nothing written) or Ray missing: exit 2; a model without an EMA unit: exit 1.
ERRORS = dict(
    usage_errors=(OutputConflictError, RayNotInstalledError),
    data_errors=(MissingAttentionUnitError,),
)


def palette_dataset(name, model_path):
    """--dataset, else the dataset of the training run the model file sits in, else voc."""
    if name is None:
        run_folder = os.path.dirname(os.path.abspath(model_path))
        try:
            name = load_config(run_folder).dataset
        except FileNotFoundError:
            name = "voc"
        name = colour_dataset(name)
    try:
        get_dataset(name)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    return name


def predict_on_ray():
    """--engine ray: the same outputs (and refusals) as the local engine, on Ray Data."""
    if FLAGS.attention_maps:
        raise app.UsageError("--attention_maps is not available with --engine ray")
    summary = predict_with_ray(
        FLAGS.model,
        FLAGS.inputs,
        FLAGS.output_dir,
        num_workers=FLAGS.num_workers,
        overlays=True,
        probabilities=FLAGS.probabilities,
        legend=FLAGS.legend,
        dataset=palette_dataset(FLAGS.dataset, FLAGS.model),
        precision=FLAGS.precision,
        progress=lambda so_far: print(so_far.progress(), flush=True),
        scales=FLAGS.scales,
        flip=FLAGS.flip,
        window=FLAGS.window,
    )
    print(summary.summary())
    if summary.failed and not summary.done and not summary.skipped:
        raise DataError(summary.report_path, "none of the images could be predicted")
    return 0


def main(argv):
    del argv
    if FLAGS.engine == "ray":
        return predict_on_ray()
    for name in ("num_workers", "probabilities"):
        if FLAGS[name].present:
            raise app.UsageError(f"--{name} is for --engine ray")
    # Planned and checked first: a refusal costs no model load and writes nothing.
    plan = plan_predictions(FLAGS.inputs, FLAGS.output_dir, attention_maps=FLAGS.attention_maps)
    notes, skipped = read_inputs(plan)  # every unreadable file known before anything is written
    if skipped:
        print(f"Skipping {len(skipped)} unreadable of {len(plan)} images:")
        for path, reason in skipped.items():
            print(f"  {path}: {reason}")
    readable = [item for item in plan if item.image_path not in skipped]
    if not readable:
        message = f"none of the {len(plan)} images can be read (listed above)"
        raise DataError(FLAGS.inputs[0], message)
    for path, note in notes.items():
        print(f"{path}: {note}")
    checked = readable[: FLAGS.precision_check_images]
    check_images = [load_photo(item.image_path)[0] for item in checked]

    def check(candidate):
        return [predict_label_map(candidate, image) for image in check_images]

    trained = load_keras_model(FLAGS.model)
    # Taken before folding: the folded copy is a plain functional model, without them.
    colours = label_colours(palette_dataset(FLAGS.dataset, FLAGS.model), trained)
    with cli.precision_flag(FLAGS.precision):
        choice = inference_model(
            trained, FLAGS.precision, check=check, asked=cli.precision_asked()
        )
    print(choice.describe())
    report = write_predictions(
        choice.model,
        plan,
        colours=colours,
        legend=FLAGS.legend,
        skipped=skipped,
        scales=FLAGS.scales,
        flip=FLAGS.flip,
        window=FLAGS.window,
        attention_bases=FLAGS.attention_bases,
    )
    extras = "overlays, attention maps" if FLAGS.attention_maps else "overlays"
    print(f"{report.summary()} (and {extras}) to {FLAGS.output_dir}")
    for path, reason in report.skipped.items():
        if path not in skipped:  # unreadable since the first reading
            print(f"  skipped {path}: {reason}")
    return 0


if __name__ == "__main__":
    cli.run(main, **ERRORS)
