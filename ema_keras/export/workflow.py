"""Export, verify, then publish: the whole export of a trained model in one call.

Every variant is written under a temporary name next to its final path,
checked against the Keras model on real images, and only then renamed to its
final name. A variant that fails keeps no file at the final path (an older
export there is removed, so it cannot pass for the new one); what was written
is kept as `<name>.FAILED<ext>` for inspection.
"""

import glob
import json
import os
import shutil

import tensorflow as tf

from ema_keras.data.decode import decode_image, examples_dataset
from ema_keras.data.voc import read_voc_split
from ema_keras.export.onnx import export_onnx, require_onnx, verify_onnx
from ema_keras.export.saved_model import export_saved_model
from ema_keras.export.tflite import export_tflite
from ema_keras.export.verification import (
    FLOAT_THRESHOLD,
    INT8_THRESHOLD,
    VerificationReport,
    format_table,
    keras_latency_ms,
    keras_logits,
    size_on_disk,
    verify_saved_model,
    verify_tflite,
)
from ema_keras.inference.precision import AGREEMENT_THRESHOLD, InferenceChoice, inference_model
from ema_keras.model_files import load_keras_model

# format name -> (file name under output_dir, TFLite quantization or None for the others)
FORMATS = {
    "saved_model": ("saved_model", None),
    "tflite_fp32": ("emanet_fp32.tflite", "float32"),
    "tflite_fp16": ("emanet_fp16.tflite", "float16"),
    "tflite_dynamic_int8": ("emanet_dynamic_int8.tflite", "dynamic_int8"),
    "tflite_int8": ("emanet_int8.tflite", "int8"),
    "onnx": ("emanet.onnx", None),
}
# ONNX needs the optional `onnx` extra, so it is exported when asked for, not by default.
DEFAULT_FORMATS = tuple(name for name in FORMATS if name != "onnx")
DEFAULT_THRESHOLDS = {
    "saved_model": FLOAT_THRESHOLD,
    "tflite_fp32": FLOAT_THRESHOLD,
    "tflite_fp16": FLOAT_THRESHOLD,
    "tflite_dynamic_int8": INT8_THRESHOLD,
    "tflite_int8": INT8_THRESHOLD,
    "onnx": FLOAT_THRESHOLD,
}
REPORT_FILE = "verification.json"
# The full-integer file of a quantization-aware copy (`export_and_verify(..., qat_model=)`):
# verified against that copy, then against the float model as "tflite_int8_qat_vs_float".
QAT_FORMAT = "tflite_int8_qat"
QAT_FILE = "emanet_int8_qat.tflite"


class ExportVerificationError(RuntimeError):
    """An exported variant disagreed with Keras (or failed to export); `reports` has them all."""

    def __init__(self, message, reports):
        super().__init__(message)
        self.reports = reports


def load_model(path):
    """A `.keras` file written by training (or any EMANet `.keras`), loaded for inference.

    Raises FileNotFoundError for a missing file and `InvalidModelFileError`
    ("<path> is not a valid .keras file: ...") for anything Keras cannot load.
    """
    return load_keras_model(path, compile=False)


def load_images(*, data_dir=None, split="val", image_paths=None, limit=None):
    """uint8 (H, W, 3) RGB images through the data pipeline's decoder.

    Either the images of a VOC split under `data_dir` (a VOCdevkit or VOC2012
    folder, e.g. the demo dataset), or `image_paths` (file names or glob
    patterns of JPEG/PNG files). At most `limit` images, in order.
    """
    if (data_dir is None) == (image_paths is None):
        raise ValueError("Give exactly one of `data_dir` and `image_paths`.")
    if data_dir is not None:
        examples = read_voc_split(data_dir, split)[:limit]
        return [example["image"].numpy() for example in examples_dataset(examples)]
    paths = []
    for pattern in [image_paths] if isinstance(image_paths, str) else image_paths:
        matches = sorted(glob.glob(os.fspath(pattern)))
        if not matches:
            raise FileNotFoundError(f"{pattern}: no image file matches")
        paths.extend(matches)
    return [decode_image(tf.io.read_file(path), path).numpy() for path in paths[:limit]]


def serving_model(model, precision, images, num_check_images=2, threshold=AGREEMENT_THRESHOLD):
    """The model the SavedModel serves in `precision` ("float32", "bfloat16" or "auto").

    "float32" serves `model` itself, as trained. Otherwise `inference_model` folds the
    BatchNorms and, for "bfloat16" (or "auto" on a CPU with bf16 support),
    checks argmax agreement with float32 on the first `num_check_images`;
    an explicit "bfloat16" below the threshold raises `PrecisionRefusedError`.
    Returns an `InferenceChoice` (`.model`, `.precision`, `.describe()`).
    """

    def check(candidate):
        return [keras_logits(candidate, image[None].astype("float32"))[0].argmax(-1)
                for image in images[:num_check_images]]

    if precision == "float32":
        return InferenceChoice(model, "float32", reason="the model as trained")
    return inference_model(model, precision, check=check, threshold=threshold)


def _staging_paths(final_path):
    root, ext = os.path.splitext(final_path)
    return f"{root}.partial{ext}", f"{root}.FAILED{ext}"


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _error_report(name, path, threshold, error):
    return VerificationReport(
        format=name,
        path=path,
        size_bytes=size_on_disk(path) if os.path.exists(path) else 0,
        max_abs_logit_diff=float("nan"),
        pixel_agreement=0.0,
        latency_ms=float("nan"),
        threshold=threshold,
        num_images=0,
        error=f"{type(error).__name__}: {error}"[:300],
    )


def _export_one(name, final_path, write, verify, threshold):
    """Writes under a temporary name, verifies, and renames to the final or the FAILED name."""
    partial_path, failed_path = _staging_paths(final_path)
    for stale in (final_path, partial_path, failed_path):
        _remove(stale)
    # Errors are reported in the table (and fail the export as a whole), not raised
    # at once, so that one broken variant does not hide the others' results.
    try:
        write(partial_path)
    except Exception as error:
        _remove(partial_path)
        return _error_report(name, final_path, threshold, error)
    try:
        report = verify(partial_path)
    except Exception as error:  # e.g. the interpreter refuses to run the file
        os.rename(partial_path, failed_path)
        return _error_report(name, failed_path, threshold, error)
    report.format = name
    report.path = final_path if report.passed else failed_path
    os.rename(partial_path, report.path)
    return report


def _export_qat(
    qat_model, model, output_dir, images, representative_images, image_size, threshold,
    num_threads,
):  # fmt: skip
    """The QAT file against the QAT copy (published if it passes), then against `model`."""

    def write(path):
        export_tflite(qat_model, path, quantization="int8", image_size=image_size,
                      representative_images=representative_images)  # fmt: skip

    def verify(path):
        return verify_tflite(path, qat_model, images, threshold=threshold,
                             num_threads=num_threads)  # fmt: skip

    report = _export_one(QAT_FORMAT, os.path.join(output_dir, QAT_FILE), write, verify, threshold)
    if report.error is not None:
        return [report]
    against_float = verify_tflite(
        report.path, model, images, threshold=threshold, num_threads=num_threads,
        format_name=f"{QAT_FORMAT}_vs_float",
    )  # fmt: skip
    return [report, against_float]


def export_and_verify(
    model,
    output_dir,
    *,
    images,
    formats=DEFAULT_FORMATS,
    representative_images=None,
    image_size=(513, 513),
    serving_size=None,
    with_probabilities=True,
    thresholds=None,
    num_threads=None,
    saved_model_precision="float32",
    print_table=True,
    raise_on_failure=True,
    qat_model=None,
):
    """Exports `model` in each of `formats`, verifies each file, and publishes those that pass.

    Args:
        model: an EMANet, or the path of a `.keras` file.
        output_dir: folder for the files (see `FORMATS` for their names) and
            `verification.json`.
        images: uint8 (H, W, 3) images to verify on (see `load_images`).
        formats: names from `FORMATS` (default `DEFAULT_FORMATS`: all but
            "onnx", which needs the `onnx` extra).
        representative_images: calibration images for "tflite_int8"
            (defaults to `images`; better, draw them from the training split).
        image_size: TFLite and ONNX input (height, width), or None for dynamic.
        serving_size: SavedModel size policy: None (every image at its own
            size) or (height, width) (canvas, see `fit_to_canvas`).
        thresholds: {format: minimum pixel agreement}; defaults 99.9% for
            float variants, 99% for int8 ones.
        num_threads: TFLite interpreter and onnxruntime threads (default: all cores).
        saved_model_precision: "float32" (the model as it is), "bfloat16" or
            "auto" (see `serving_model`): the SavedModel then serves the folded
            model in the chosen precision, verified against float32 Keras at
            the bfloat16 agreement threshold (99.5%); raises
            `PrecisionRefusedError` before anything is written when bfloat16
            falls below it on the check images.
        raise_on_failure: raise `ExportVerificationError` when a variant
            fails; otherwise only return the reports.
        qat_model: a quantization-aware copy of `model`, fine-tuned
            (`ema_keras.quantization`): adds `QAT_FORMAT`, the full-integer
            file with the ranges it learnt (`representative_images` calibrate
            only the tensors it leaves unquantized), verified against it and
            then against `model` (threshold of "tflite_int8").

    Returns:
        A list of `VerificationReport`, one per format, in order.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not (formats or qat_model is not None):
        raise ValueError(
            f"Unknown or no export formats {unknown or list(formats)}; choose from {list(FORMATS)}."
        )
    if "onnx" in formats:
        require_onnx()  # before anything is written
    served = serving_model(model, saved_model_precision, images)  # refusal: before writing
    if print_table and served.precision != "float32":
        print(f"SavedModel: {served.describe()}")
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    if served.precision == "bfloat16":
        thresholds["saved_model"] = min(thresholds["saved_model"], AGREEMENT_THRESHOLD)
    representative_images = images if representative_images is None else representative_images
    os.makedirs(output_dir, exist_ok=True)

    reports = []
    if qat_model is not None:
        thresholds.setdefault(QAT_FORMAT, thresholds["tflite_int8"])
        reports.extend(
            _export_qat(qat_model, model, output_dir, images, representative_images,
                        image_size, thresholds[QAT_FORMAT], num_threads)
        )  # fmt: skip
    for name in formats:
        file_name, quantization = FORMATS[name]
        threshold = thresholds[name]
        if name == "onnx":

            def write(path):
                export_onnx(model, path, image_size=image_size)

            def verify(path):
                return verify_onnx(
                    path, model, images, threshold=threshold, num_threads=num_threads
                )

        elif quantization is None:

            def write(path):
                export_saved_model(
                    served.model,
                    path,
                    image_size=serving_size,
                    with_probabilities=with_probabilities,
                )

            def verify(path):
                return verify_saved_model(
                    path, model, images, image_size=serving_size, threshold=threshold
                )

        else:

            def write(path):
                export_tflite(
                    model,
                    path,
                    quantization=quantization,
                    image_size=image_size,
                    representative_images=representative_images,
                )

            def verify(path):
                return verify_tflite(
                    path, model, images, threshold=threshold, num_threads=num_threads
                )

        reports.append(
            _export_one(name, os.path.join(output_dir, file_name), write, verify, threshold)
        )

    reference_latency = keras_latency_ms(model, images, image_size)
    table = format_table(reports, reference_latency_ms=reference_latency)
    with open(os.path.join(output_dir, REPORT_FILE), "w") as handle:
        json.dump(
            {
                "image_size": None if image_size is None else list(image_size),
                "serving_size": None if serving_size is None else list(serving_size),
                # A bfloat16 SavedModel is fast only on CPUs with bf16 (and oneDNN).
                "saved_model_precision": served.precision,
                "keras_latency_ms": reference_latency,
                "reports": [report.as_dict() for report in reports],
            },
            handle,
            indent=1,
        )
    if print_table:
        print(table)
    failed = [report.format for report in reports if not report.passed]
    if failed and raise_on_failure:
        raise ExportVerificationError(f"Export verification failed for {failed}:\n{table}", reports)
    return reports
