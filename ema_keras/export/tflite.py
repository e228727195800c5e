"""TFLite (LiteRT) export: float32, float16, dynamic-range int8 and full-integer int8.

The conversion is Keras' own `model.export(path, format="litert")`: on the
TensorFlow backend it writes a SavedModel of the model's call and runs
`tf.lite.TFLiteConverter.from_saved_model`, passing our keyword arguments on
to the converter. It serves every variant here; what it does not do by itself
is restrict the ops, so `supported_ops` is overridden with the builtin sets
(Keras adds SELECT_TF_OPS, which would need the Flex delegate on the device).
EMANet needs no Flex op: the EM iterations become BATCH_MATMUL, SOFTMAX, SUM,
DIV and SQRT, the upsampling RESIZE_BILINEAR.

Every file takes raw RGB pixels (`image`, (1, H, W, 3), 0..255; float32, or
uint8 for full-integer int8) and returns `logits` (1, H, W, classes): float32,
or int8 for full-integer int8 (dequantize with the tensor's scale and zero
point). ImageNet normalisation is in the graph: the model's own, or for a
model that expects normalised input one put in front of it (`model_inputs`),
never both. With `image_size=(H, W)` the
input size is fixed (pad or scale images as `preprocessing.fit_to_canvas`
does); with `image_size=None` height and width are dynamic and the
interpreter's input is resized per image.
"""

import keras
import numpy as np
import tensorflow as tf

from ema_keras import log_filter
from ema_keras.export.preprocessing import canvas_numpy
from ema_keras.models.input_contract import model_inputs
from ema_keras.models.outputs import main_logits

QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def pixel_model(model, image_size=None):
    """`model` with raw pixels in and {"logits": ...} out (normalised in front if it needs)."""
    height, width = (None, None) if image_size is None else (int(v) for v in image_size)
    pixels = keras.Input((height, width, 3), batch_size=1, name=INPUT_NAME)
    logits = main_logits(model(model_inputs(model, pixels)))
    return keras.Model(pixels, {OUTPUT_NAME: logits}, name=f"{model.name}_pixels")


def calibration_inputs(images, image_size=None):
    """The float32 (1, H, W, 3) inputs that the int8 calibration sees, one per image.

    Images go on the export's canvas (or stay as they are for a dynamic size).
    One pixel of each holds 0 and 255 in its first two channels, so the
    calibrated input range is exactly 0..255 and the uint8 input of the
    quantized model is the raw pixel value (scale 1, zero point 0).
    """
    inputs = []
    for image in images:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"Calibration images must be (H, W, 3) RGB arrays, got shape {image.shape}."
            )
        if image_size is None:
            canvas = image[None].astype(np.float32)
        else:
            canvas, _ = canvas_numpy(image, image_size)
            canvas = np.round(canvas)
        canvas[0, 0, 0, 0], canvas[0, 0, 0, 1] = 0.0, 255.0
        inputs.append(canvas)
    return inputs


def converter_options(quantization, representative_images=None, image_size=None):
    """The TFLiteConverter attributes of a variant (what `model.export` passes on)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"`quantization` must be one of {QUANTIZATIONS}, got {quantization!r}.")
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float32":
        return {"target_spec": {"supported_ops": builtins}}
    if quantization == "float16":
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {"supported_ops": builtins, "supported_types": [tf.float16]},
        }
    if quantization == "dynamic_int8":
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {"supported_ops": builtins},
        }
    if not representative_images:
        raise ValueError(
            "`representative_images` are required for quantization='int8' (calibration)."
        )
    inputs = calibration_inputs(representative_images, image_size)
    return {
        "optimizations": [tf.lite.Optimize.DEFAULT],
        "representative_dataset": lambda: ([x] for x in inputs),
        "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
        "inference_input_type": tf.uint8,
        "inference_output_type": tf.int8,
    }


def export_tflite(
    model, path, *, quantization="float32", image_size=(513, 513), representative_images=None
):
    """Writes `model` as a builtin-ops-only TFLite file.

    Args:
        model: an EMANet (or a Keras model from images, raw or normalised
            as `expects_raw_pixels` says, to logits).
        path: the `.tflite` file to write.
        quantization: "float32", "float16" (float16 weights), "dynamic_int8"
            (int8 weights, float activations) or "int8" (full-integer, uint8
            pixels in, int8 logits out).
        image_size: (height, width) of the fixed input, or None for a
            dynamic height and width.
        representative_images: uint8 (H, W, 3) images to calibrate the int8
            activations on (required for "int8"); draw them from the
            training data, e.g. with `ema_keras.export.load_images`.

    Returns:
        `path`.
    """
    path = str(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"TFLite path must end with .tflite, got {path!r}.")
    options = converter_options(quantization, representative_images, image_size)
    with log_filter.native_chatter_hidden():  # the converter's "fully_quantize: ..." line
        pixel_model(model, image_size).export(path, format="litert", verbose=False, **options)
    return path
