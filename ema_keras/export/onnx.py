"""ONNX export (through tf2onnx) and its check with onnxruntime against Keras.

The file takes raw RGB pixels like the TFLite files: input `image`, float32
(B, H, W, 3), 0..255 (normalisation is in the graph), output `logits`, float32
(B, H, W, classes). The batch is dynamic; height and width are fixed by
`image_size` (pad or scale images as `preprocessing.fit_to_canvas` does) or
dynamic with `image_size=None`.

How: the raw-pixel model's call is traced on TensorFlow, frozen (variables
and captured constants become graph constants) and converted by tf2onnx,
which is what Keras' `model.export(format="onnx")` does on TensorFlow, with
two differences that make it work for every model here. Keras names every
captured non-variable tensor a graph input, so a captured constant (as
`keras.layers.Normalization`'s mean and variance were) becomes an input that
onnxruntime then demands; freezing first leaves `image` the only input. And
MobileNetV3's hard-swish adds a scalar, on which tf2onnx's transpose
optimizer fails (see `_scalar_addends_as_vectors`). The EMANet layers (EM
unit, SyncBatchNormalization, resize) need nothing special.
"""

import importlib.util
import os

import numpy as np
import tensorflow as tf

from ema_keras.export.tflite import pixel_model
from ema_keras.export.verification import (
    FLOAT_THRESHOLD,
    Comparison,
    canvas_or_image,
    checked_images,
    keras_logits,
)

# The packages of the `onnx` extra, by import name, and how to install them.
REQUIRED_PACKAGES = ("onnx", "onnxruntime", "tf2onnx")
INSTALL_HINT = "pip install 'ema-keras[onnx]'"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def missing_packages():
    """The packages of the `onnx` extra that are not installed (empty when all are)."""
    return [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]


def require_onnx():
    """Raises a one-line ImportError naming the missing packages of the `onnx` extra."""
    missing = missing_packages()
    if missing:
        raise ImportError(
            f"ONNX export needs {', '.join(missing)} (the onnx extra): {INSTALL_HINT}"
        )


def export_onnx(model, path, *, image_size=(513, 513), opset=None):
    """Writes `model` as an ONNX file that takes raw pixels.

    Args:
        model: an EMANet or MobileEMANet (any model the TFLite export takes).
        path: the `.onnx` file to write.
        image_size: (height, width) of the input, or None for dynamic.
        opset: ONNX opset (default: tf2onnx's).

    Returns:
        `path`.
    """
    require_onnx()
    path = os.fspath(path)
    if not path.endswith(".onnx"):
        raise ValueError(f"ONNX path must end with .onnx, got {path!r}.")
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.util import deprecation

    wrapped = pixel_model(model, image_size)
    height, width = (None, None) if image_size is None else (int(v) for v in image_size)
    spec = tf.TensorSpec([None, height, width, 3], tf.float32, name=INPUT_NAME)
    logits_fn = tf.function(lambda image: wrapped(image, training=False)[OUTPUT_NAME])
    frozen = convert_variables_to_constants_v2(logits_fn.get_concrete_function(spec))
    (graph_input,), (graph_output,) = frozen.inputs, frozen.outputs
    # tf2onnx calls TF 1 graph utilities, and TF warns that they are deprecated,
    # to the user, who can do nothing about it.
    with deprecation.silence():
        tf2onnx.convert.from_graph_def(
            _scalar_addends_as_vectors(frozen.graph.as_graph_def(add_shapes=True)),
            name=model.name,
            input_names=[graph_input.name],
            output_names=[graph_output.name],
            tensors_to_rename={graph_input.name: INPUT_NAME, graph_output.name: OUTPUT_NAME},
            opset=opset,
            output_path=path,
        )
    return path


def _scalar_addends_as_vectors(graph_def):
    """Gives each `x + scalar constant` (x of rank >= 1) a constant of shape (1,) instead.

    The result is the same tensor, but tf2onnx 1.17's transpose optimizer
    fails on a scalar added after a bias-free Conv (`max()` of an empty shape
    in `_add_handler`): hard-swish's `x + 3` in MobileNetV3. It then logs the
    traceback and skips the whole optimisation, leaving a pair of Transposes
    around every convolution of the mobile model.
    """
    nodes = {node.name: node for node in graph_def.node}
    for node in list(graph_def.node):
        if node.op not in ("Add", "AddV2"):
            continue
        tensor_name, addend_name = (name.split(":")[0] for name in node.input[:2])
        addend, tensor = nodes.get(addend_name), nodes.get(tensor_name)
        if addend is None or addend.op != "Const" or tensor is None:
            continue
        value = tf.make_ndarray(addend.attr["value"].tensor)
        shapes = tensor.attr["_output_shapes"].list.shape
        if value.shape != () or not shapes or len(shapes[0].dim) < 1:
            continue
        vector = graph_def.node.add()
        vector.CopyFrom(addend)
        vector.name = f"{node.name}/addend_vector"
        vector.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.reshape(1)))
        del vector.attr["_output_shapes"]
        node.input[1] = vector.name
    return graph_def


def onnx_session(path, num_threads=None):
    """An onnxruntime CPU session for `path` (`num_threads` or all cores)."""
    require_onnx()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads or os.cpu_count()
    return onnxruntime.InferenceSession(
        os.fspath(path), options, providers=["CPUExecutionProvider"]
    )


def verify_onnx(path, model, images, *, threshold=FLOAT_THRESHOLD, num_threads=None):
    """Runs an ONNX file with onnxruntime against Keras on `images`, as `verify_tflite` does.

    A fixed-size file gets each image on its canvas (`fit_to_canvas`); a
    dynamic one gets the image as it is. Keras runs on the same pixels; the
    comparison covers the image's part of the canvas.
    """
    images = checked_images(images)
    session = onnx_session(path, num_threads)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
        raise ValueError(
            f"{path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', got "
            f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}."
        )
    height, width = inputs[0].shape[1:3]
    fixed = isinstance(height, int) and isinstance(width, int)
    image_size = (height, width) if fixed else None
    comparison = Comparison()
    for index, image in enumerate(images):
        canvas, (content_height, content_width) = canvas_or_image(image, image_size)
        feed = {INPUT_NAME: canvas}
        if index == 0:
            session.run([OUTPUT_NAME], feed)  # warm-up: allocation, kernel selection
        (logits,) = comparison.timed(session.run, [OUTPUT_NAME], feed)
        reference = keras_logits(model, canvas)
        region = np.s_[:, :content_height, :content_width]
        comparison.add_logits(logits[region], reference[region])
    return comparison.report("onnx", path, threshold=threshold, num_images=len(images))
