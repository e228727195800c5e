"""Checks an exported file against the Keras model it came from, on real images.

Each check runs the file the way a user would (a SavedModel's signatures
through TensorFlow, a TFLite file through `ai_edge_litert`'s interpreter), runs
the Keras model on exactly the same input, and reports the largest absolute
logit difference and the fraction of pixels whose argmax label agrees, with the
file's size and its latency per image on this machine.
"""

import dataclasses
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from ema_keras import log_filter
from ema_keras.export.preprocessing import canvas_numpy
from ema_keras.export.saved_model import BYTES_SIGNATURE, IMAGES_SIGNATURE, make_logits_fn
from ema_keras.models.input_contract import model_inputs
from ema_keras.models.outputs import main_logits

FLOAT_THRESHOLD = 0.999
INT8_THRESHOLD = 0.99


@dataclasses.dataclass
class VerificationReport:
    """One exported variant against Keras; `passed` is agreement >= threshold."""

    format: str
    path: str
    size_bytes: int
    max_abs_logit_diff: float
    pixel_agreement: float
    latency_ms: float
    threshold: float
    num_images: int
    error: Optional[str] = None

    @property
    def passed(self):
        return self.error is None and self.pixel_agreement >= self.threshold

    def as_dict(self):
        return {**dataclasses.asdict(self), "passed": self.passed}


def size_on_disk(path):
    """Bytes of a file, or of every file under a folder."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )


def checked_images(images):
    """`images` as a list of uint8 (H, W, 3) arrays; a ValueError naming what is wrong otherwise."""
    images = [np.asarray(image) for image in images]
    if not images:
        raise ValueError("Verification needs at least one image; `images` is empty.")
    for image in images:
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(
                "Verification images must be uint8 (H, W, 3) RGB arrays, "
                f"got {image.dtype} {image.shape}."
            )
    return images


class Comparison:
    """Accumulates an exported file's logit difference, argmax agreement and latency over images.

    Every verifier (SavedModel, TFLite, ONNX) feeds it and ends with `report`.
    """

    def __init__(self):
        self.max_abs_diff = 0.0
        self.agreeing = 0
        self.pixels = 0
        self.latencies_ms = []

    def timed(self, fn, *args, **kwargs):
        """`fn(*args, **kwargs)`, its wall time recorded for the report's median latency."""
        result, milliseconds = _timed(fn, *args, **kwargs)
        self.latencies_ms.append(milliseconds)
        return result

    def add_logits(self, logits, reference):
        if logits.shape != reference.shape:
            raise ValueError(
                f"Exported output shape {logits.shape} != Keras output shape {reference.shape}."
            )
        self.max_abs_diff = max(self.max_abs_diff, float(np.max(np.abs(logits - reference))))
        self.add_labels(np.argmax(logits, axis=-1), np.argmax(reference, axis=-1))

    def add_labels(self, labels, reference_labels):
        if labels.shape != reference_labels.shape:
            raise ValueError(
                f"Exported label map {labels.shape} != Keras label map {reference_labels.shape}."
            )
        self.agreeing += int(np.sum(labels == reference_labels))
        self.pixels += labels.size

    @property
    def agreement(self):
        return self.agreeing / max(self.pixels, 1)

    def report(self, format_name, path, *, threshold, num_images):
        return VerificationReport(
            format=format_name,
            path=os.fspath(path),
            size_bytes=size_on_disk(path),
            max_abs_logit_diff=self.max_abs_diff,
            pixel_agreement=self.agreement,
            latency_ms=float(np.median(self.latencies_ms)),
            threshold=threshold,
            num_images=num_images,
        )


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, (time.perf_counter() - start) * 1000.0


def canvas_or_image(image, image_size):
    """(1, H, W, 3) float32 input for a file of fixed `image_size` (the image on its canvas,
    `fit_to_canvas`) or of dynamic size (None: the image as it is), and the image's
    (height, width) within it."""
    if image_size is None:
        return image[None].astype(np.float32), image.shape[:2]
    return canvas_numpy(image, image_size)


def keras_logits(model, pixels):
    """The Keras model's logits for float pixels (B, H, W, 3), as numpy."""
    return np.asarray(main_logits(model(model_inputs(model, pixels), training=False)))


def verify_saved_model(path, model, images, *, image_size=None, threshold=FLOAT_THRESHOLD):
    """Runs the SavedModel's `serving_images` and `serving_bytes` signatures against Keras.

    `image_size` is the size policy the SavedModel was exported with (the
    Keras reference applies the same one). Logits are compared through
    `serving_images`; `serving_bytes` gets each image as a (lossless) PNG and
    its label map is compared with Keras' argmax at the original size. The
    agreement reported is over both. Latency: `serving_images`, one image.
    """
    images = checked_images(images)
    loaded = tf.saved_model.load(os.fspath(path))
    serve_images = loaded.signatures[IMAGES_SIGNATURE]
    serve_bytes = loaded.signatures[BYTES_SIGNATURE]
    reference_fn = make_logits_fn(model, image_size)
    comparison = Comparison()
    serve_images(images=tf.constant(images[0][None], tf.float32))  # warm-up: tracing, allocation
    for image in images:
        pixels = tf.constant(image[None], tf.float32)
        outputs = comparison.timed(serve_images, images=pixels)
        reference = np.asarray(reference_fn(pixels))
        comparison.add_logits(outputs["logits"].numpy(), reference)
        encoded = tf.io.encode_png(image)
        served = serve_bytes(image_bytes=tf.reshape(encoded, [1]))
        height, width = image.shape[:2]
        if tuple(served["image_size"].numpy()[0]) != (height, width):
            raise ValueError(
                f"{path}: serving_bytes reports size {served['image_size'].numpy()[0]}, "
                f"the image is {(height, width)}."
            )
        comparison.add_labels(served["labels"].numpy()[0], np.argmax(reference[0], axis=-1))
    return comparison.report("saved_model", path, threshold=threshold, num_images=len(images))


def tflite_interpreter(path, num_threads=None):
    """An `ai_edge_litert` interpreter for `path` (XNNPACK on, `num_threads` or all cores)."""
    from ai_edge_litert.interpreter import Interpreter

    # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" when it first allocates.
    with log_filter.native_chatter_hidden():
        interpreter = Interpreter(
            model_path=os.fspath(path), num_threads=num_threads or os.cpu_count()
        )
        interpreter.allocate_tensors()
    return interpreter


def tflite_operators(path):
    """[(op name, output dtype name)] of a TFLite file, in execution order (before delegation).

    A full-integer file's kernels output "int8" (shape arithmetic "int32");
    a "float32" output is a float island. Read with ai_edge_litert's
    operator listing (`_get_ops_details`, the only one it has) on an
    interpreter without delegates, so every op of the file is listed.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=os.fspath(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    return [
        (op["op_name"], np.dtype(tensors[op["outputs"][0]]["dtype"]).name)
        for op in interpreter._get_ops_details()
    ]


def _quantize(values, details):
    scale, zero_point = details["quantization"]
    dtype = details["dtype"]
    if dtype == np.float32:
        return values.astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values, details):
    scale, zero_point = details["quantization"]
    if details["dtype"] == np.float32:
        return values
    return (values.astype(np.float32) - zero_point) * scale


def verify_tflite(
    path, model, images, *, threshold=FLOAT_THRESHOLD, num_threads=None, format_name=None
):
    """Runs a TFLite file with `ai_edge_litert` against Keras on `images`.

    A fixed-size file gets each image on its canvas (`fit_to_canvas`); a
    dynamic one gets the image as it is. Keras runs on the very input the
    interpreter got (after its uint8 quantization for full-integer files);
    the comparison covers the image's part of the canvas.
    """
    images = checked_images(images)
    runner = tflite_interpreter(path, num_threads).get_signature_runner()
    input_details = runner.get_input_details()
    output_details = runner.get_output_details()
    if list(input_details) != ["image"] or list(output_details) != ["logits"]:
        raise ValueError(
            f"{path}: expected input 'image' and output 'logits', got "
            f"{list(input_details)} -> {list(output_details)}."
        )
    input_details, output_details = input_details["image"], output_details["logits"]
    height, width = input_details["shape_signature"][1:3]
    image_size = None if min(height, width) < 0 else (int(height), int(width))
    comparison = Comparison()
    for index, image in enumerate(images):
        canvas, (content_height, content_width) = canvas_or_image(image, image_size)
        fed = _quantize(canvas, input_details)
        if index == 0:
            runner(image=fed)  # warm-up: allocation, XNNPACK packing
        outputs = comparison.timed(runner, image=fed)
        logits = _dequantize(outputs["logits"], output_details)
        reference = keras_logits(model, _dequantize(fed, input_details).astype(np.float32))
        region = np.s_[:, :content_height, :content_width]
        comparison.add_logits(logits[region], reference[region])
    quantization = "int8" if input_details["dtype"] != np.float32 else "float"
    return comparison.report(
        format_name or f"tflite_{quantization}", path, threshold=threshold, num_images=len(images)
    )


def keras_latency_ms(model, images, image_size=None):
    """Median milliseconds per image of the Keras model in a tf.function, under a size policy."""
    images = checked_images(images)
    logits_fn = tf.function(
        make_logits_fn(model, image_size),
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
    )
    logits_fn(tf.constant(images[0][None], tf.float32))
    latencies = [_timed(logits_fn, tf.constant(image[None], tf.float32))[1] for image in images]
    return float(np.median(latencies))


def format_table(reports, reference_latency_ms=None):
    """The reports as a markdown table (one row per variant, plus Keras' latency if given)."""
    lines = [
        "| variant | size (MB) | latency (ms/image) | max abs logit diff | pixel agreement "
        "| threshold | result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    if reference_latency_ms is not None:
        lines.append(f"| keras (tf.function, reference) | | {reference_latency_ms:.1f} | | | | |")
    for report in reports:
        if report.error is not None:
            lines.append(
                f"| {report.format} | | | | | {report.threshold:.1%} | ERROR: {report.error} |"
            )
            continue
        lines.append(
            f"| {report.format} | {report.size_bytes / 1e6:.2f} | {report.latency_ms:.1f} | "
            f"{report.max_abs_logit_diff:.2e} | {report.pixel_agreement:.3%} | "
            f"{report.threshold:.1%} | {'pass' if report.passed else 'FAIL'} |"
        )
    return "\n".join(lines)
