import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.layers.resize import BilinearResize


def source_coordinates(size_in, size_out, align_corners):
    """Where output pixel i samples the input, as PyTorch's F.interpolate defines it."""
    out = np.arange(size_out, dtype=np.float64)
    if align_corners:
        scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        return out * scale
    return np.maximum((out + 0.5) * size_in / size_out - 0.5, 0.0)


def interpolation_matrix(size_in, size_out, align_corners):
    """(size_out, size_in) linear-interpolation weights along one axis."""
    source = source_coordinates(size_in, size_out, align_corners)
    low = np.minimum(np.floor(source).astype(int), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    fraction = source - low
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), low] += 1.0 - fraction
    matrix[np.arange(size_out), high] += fraction
    return matrix


def reference_resize(features, height, width, align_corners):
    rows = interpolation_matrix(features.shape[1], height, align_corners)
    cols = interpolation_matrix(features.shape[2], width, align_corners)
    return np.einsum("hi,bijc,wj->bhwc", rows, features.astype(np.float64), cols)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(
    "in_size, out_size", [((5, 7), (33, 49)), ((8, 8), (64, 64)), ((6, 4), (3, 9))]
)
def test_matches_pytorch_bilinear_definition(align_corners, in_size, out_size):
    features = np.random.default_rng(0).normal(size=(2, *in_size, 3)).astype("float32")
    reference = np.zeros((2, *out_size, 1), "float32")
    output = BilinearResize(align_corners=align_corners)([features, reference])
    expected = reference_resize(features, *out_size, align_corners)
    np.testing.assert_allclose(output.numpy(), expected, atol=1e-5)


def test_size_follows_the_reference_tensor_at_run_time(tmp_path):
    features = keras.Input((None, None, 4))
    image = keras.Input((None, None, 3))
    model = keras.Model([features, image], BilinearResize(name="resize")([features, image]))
    assert tuple(model.output.shape) == (None, None, None, 4)
    run = tf.function(lambda a, b: model([a, b]), reduce_retracing=True)
    for height, width in ((16, 20), (9, 31)):
        low = np.ones((1, 3, 4, 4), "float32")
        out = run(low, np.zeros((1, height, width, 3), "float32"))
        assert tuple(out.shape) == (1, height, width, 4)
        np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-6)
    path = os.path.join(str(tmp_path), "resize.keras")
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert reloaded.get_layer("resize").get_config() == model.get_layer("resize").get_config()


def test_float16_inputs_and_float32_layer():
    features = np.random.default_rng(1).normal(size=(1, 4, 4, 2)).astype("float16")
    reference = np.zeros((1, 7, 7, 1), "float16")
    output = BilinearResize(dtype="float32")([features, reference])
    assert output.dtype == "float32"
    half = BilinearResize(dtype="mixed_float16")([features, reference])
    assert half.dtype == "float16"
    np.testing.assert_allclose(half.numpy(), output.numpy(), atol=1e-2)


def test_converts_to_tflite_builtins():
    from ai_edge_litert.interpreter import Interpreter

    features = keras.Input((5, 6, 3), batch_size=1)
    image = keras.Input((17, 21, 3), batch_size=1)
    model = keras.Model([features, image], BilinearResize()([features, image]))
    function = tf.function(lambda a, b: model([a, b])).get_concrete_function(
        tf.TensorSpec((1, 5, 6, 3)), tf.TensorSpec((1, 17, 21, 3))
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    inputs = np.random.default_rng(2).normal(size=(1, 5, 6, 3)).astype("float32")
    image_data = np.zeros((1, 17, 21, 3), "float32")
    by_shape = {value.shape: value for value in (inputs, image_data)}
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], by_shape[tuple(detail["shape"])])
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(result, reference_resize(inputs, 17, 21, True), atol=1e-5)
    op_names = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "RESIZE_BILINEAR" in op_names


def test_rejects_a_single_tensor():
    with pytest.raises(ValueError, match="features, reference"):
        BilinearResize()(np.zeros((1, 4, 4, 1), "float32"))
