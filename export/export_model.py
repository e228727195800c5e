"""Exports a trained EMANet for serving and the edge, verifies every file, prints the table.

    python export/export_model.py --model runs/demo/last.keras \\
        --data_dir runs/demo/demo_data/VOC2012 --output_dir runs/demo/export \\
        --formats saved_model,tflite_fp32,tflite_fp16,tflite_dynamic_int8,tflite_int8,onnx

--formats defaults to the SavedModel and the four TFLite files; `onnx` (or
`all`) adds the ONNX file, which needs the onnx extra (pip install
'ema-keras[onnx]'). Verification images come from --split of --data_dir (or
--images); full-integer int8 is calibrated on --calibration_split. Exits non-zero when a variant's
pixel agreement with Keras falls below its threshold (that variant's file is
then left as <name>.FAILED.<ext>, not under its final name). --qat_model adds the
full-integer file of a quantization-aware copy (docs/mobile.md), emanet_int8_qat.tflite.
"""

from absl import app, flags, logging

from ema_keras import cli, export

flags.DEFINE_string(
    "model", None, "The .keras file to export (e.g. <model_dir>/best.keras).", required=True
)
flags.DEFINE_string(
    "output_dir", None, "Folder for the exported files and verification.json.", required=True
)
flags.DEFINE_list(
    "formats",
    list(export.DEFAULT_FORMATS),
    f"Variants to export, or 'all': {list(export.FORMATS)}.",
)
flags.DEFINE_string(
    "data_dir", None, "VOCdevkit or VOC2012 folder to draw verification images from."
)
flags.DEFINE_string("split", "val", "Split of --data_dir to verify on.")
flags.DEFINE_string(
    "calibration_split", "train", "Split of --data_dir to calibrate full-integer int8 on."
)
flags.DEFINE_list(
    "images", None, "JPEG/PNG files or globs to verify (and calibrate) on, instead of --data_dir."
)
flags.DEFINE_integer("num_images", 16, "Verification images.")
flags.DEFINE_integer("num_calibration_images", 32, "Calibration images for tflite_int8.")
flags.DEFINE_string(
    "image_size", "513,513", "TFLite and ONNX input height,width, or 'dynamic'."
)
flags.DEFINE_string(
    "serving_size",
    "original",
    "SavedModel: 'original' (each image at its own size) or height,width (pad/scale).",
)
flags.DEFINE_boolean("with_probabilities", True, "SavedModel signatures also return probabilities.")
flags.DEFINE_float(
    "float_threshold", export.FLOAT_THRESHOLD, "Minimum pixel agreement, float variants."
)
flags.DEFINE_float(
    "int8_threshold", export.INT8_THRESHOLD, "Minimum pixel agreement, int8 variants."
)
cli.define_precision_flags(
    __name__,
    precision_help="SavedModel precision: float32 (the model as trained), bfloat16 (BatchNorm "
    "folded, bfloat16 compute; refused when it labels under 99.5% of the check pixels as float32 "
    "does), or auto (bfloat16 where the CPU has bf16 instructions and it agrees, else "
    "float32). The TFLite and ONNX files are unaffected.",
)
flags.DEFINE_integer(
    "num_threads", None, "TFLite interpreter and onnxruntime threads (default: all cores)."
)
flags.DEFINE_string(
    "qat_model",
    None,
    "A quantization-aware copy of --model, fine-tuned (ema_keras.quantization): also writes "
    "emanet_int8_qat.tflite with its learnt ranges, verified against it and against --model.",
)
FLAGS = flags.FLAGS


def parse_size(value, none_word, flag):
    if value == none_word:
        return None
    try:
        height, width = (int(v) for v in value.split(","))
    except ValueError:
        raise app.UsageError(
            f"--{flag} must be '{none_word}' or height,width; got {value!r}"
        ) from None
    return height, width


def main(argv):
    del argv
    # The converter and the SavedModel writer log every step at INFO.
    logging.set_verbosity(logging.WARNING)
    if (FLAGS.data_dir is None) == (FLAGS.images is None):
        raise app.UsageError("Give exactly one of --data_dir and --images.")
    for name in ("float_threshold", "int8_threshold"):
        if not 0.0 <= FLAGS[name].value <= 1.0:
            raise app.UsageError(f"--{name} must be in [0, 1], got {FLAGS[name].value}")
    image_size = parse_size(FLAGS.image_size, "dynamic", "image_size")
    serving_size = parse_size(FLAGS.serving_size, "original", "serving_size")
    formats = list(export.FORMATS) if FLAGS.formats == ["all"] else FLAGS.formats
    unknown = sorted(set(formats) - set(export.FORMATS))
    if unknown or not formats:
        raise app.UsageError(
            f"--formats {','.join(unknown)} unknown; use 'all' or some of: "
            f"{','.join(export.FORMATS)}"
        )
    missing = export.onnx.missing_packages() if "onnx" in formats else []
    if missing:
        raise app.UsageError(
            f"--formats onnx needs {', '.join(missing)}: {export.onnx.INSTALL_HINT} "
            "(or leave onnx out of --formats)"
        )
    model = export.load_model(FLAGS.model)
    if FLAGS.data_dir is not None:
        images = export.load_images(
            data_dir=FLAGS.data_dir, split=FLAGS.split, limit=FLAGS.num_images
        )
        calibration = None
        if "tflite_int8" in formats or FLAGS.qat_model:
            calibration = export.load_images(
                data_dir=FLAGS.data_dir,
                split=FLAGS.calibration_split,
                limit=FLAGS.num_calibration_images,
            )
    else:
        images = export.load_images(image_paths=FLAGS.images, limit=FLAGS.num_images)
        calibration = export.load_images(
            image_paths=FLAGS.images, limit=FLAGS.num_calibration_images
        )
    thresholds = {
        name: FLAGS.int8_threshold if "int8" in name else FLAGS.float_threshold
        for name in (*export.FORMATS, export.QAT_FORMAT)
    }
    try:
        with cli.precision_flag(FLAGS.precision):  # refused before anything is written
            export.export_and_verify(
                model,
                FLAGS.output_dir,
                images=images,
                formats=formats,
                representative_images=calibration,
                image_size=image_size,
                serving_size=serving_size,
                with_probabilities=FLAGS.with_probabilities,
                thresholds=thresholds,
                num_threads=FLAGS.num_threads,
                saved_model_precision=FLAGS.precision,
                qat_model=FLAGS.qat_model and export.load_model(FLAGS.qat_model),
            )
    except export.ExportVerificationError as error:
        failed = [report.format for report in error.reports if not report.passed]
        logging.error(
            "Verification failed for %s (table above); their files are *.FAILED.*", failed
        )
        return 1
    print(f"All variants verified; files in {FLAGS.output_dir}")
    return 0


if __name__ == "__main__":
    cli.run(main)
