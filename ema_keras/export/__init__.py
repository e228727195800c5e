"""Export for serving and the edge, verified against Keras every time.

`export_and_verify` is the one call (and `export/export_model.py` its CLI):
it writes a SavedModel with serving signatures and TFLite files (float32,
float16, dynamic-range int8, full-integer int8) and, on request, an ONNX file,
runs each of them on real images against the Keras model (onnxruntime for
ONNX), prints size, latency and agreement per variant, and publishes only the
files that pass.
"""

from ema_keras.export.onnx import export_onnx, onnx_session, verify_onnx
from ema_keras.export.preprocessing import fit_to_canvas, restore_size
from ema_keras.export.saved_model import export_saved_model, make_logits_fn
from ema_keras.export.tflite import QUANTIZATIONS, export_tflite, pixel_model
from ema_keras.export.verification import (
    FLOAT_THRESHOLD,
    INT8_THRESHOLD,
    VerificationReport,
    format_table,
    keras_latency_ms,
    tflite_interpreter,
    tflite_operators,
    verify_saved_model,
    verify_tflite,
)
from ema_keras.export.workflow import (
    DEFAULT_FORMATS,
    DEFAULT_THRESHOLDS,
    FORMATS,
    QAT_FORMAT,
    ExportVerificationError,
    export_and_verify,
    load_images,
    load_model,
    serving_model,
)

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_THRESHOLDS",
    "FLOAT_THRESHOLD",
    "FORMATS",
    "INT8_THRESHOLD",
    "QAT_FORMAT",
    "QUANTIZATIONS",
    "ExportVerificationError",
    "VerificationReport",
    "export_and_verify",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "fit_to_canvas",
    "format_table",
    "keras_latency_ms",
    "serving_model",
    "load_images",
    "load_model",
    "make_logits_fn",
    "onnx_session",
    "pixel_model",
    "restore_size",
    "tflite_interpreter",
    "tflite_operators",
    "verify_onnx",
    "verify_saved_model",
    "verify_tflite",
]
