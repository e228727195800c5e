"""Export to SavedModel and TFLite, checked against the Keras model it came from."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ema_keras import export
from ema_keras.data.decode import decode_image
from ema_keras.data.pipeline import IMAGENET_MEAN, normalize_image
from ema_keras.export import workflow
from ema_keras.models import EMANetImageSegmenter, expects_raw_pixels, model_inputs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CANVAS = (72, 72)


def keras_labels(model, image):
    logits = model(model_inputs(model, tf.cast(image[None], tf.float32)), training=False)
    return np.argmax(logits.numpy()[0], axis=-1)


def perturbed_copy(model, seed=0):
    """The same network with noise of the weights' own scale added to its classifier."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    kernel = copy.get_layer("classifier_conv").kernel
    noise = np.random.default_rng(seed).normal(0.0, float(np.std(kernel.numpy())), kernel.shape)
    kernel.assign(kernel.numpy() + noise.astype("float32"))
    return copy


def tflite_ops(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    return {op["op_name"] for op in interpreter._get_ops_details()}


# --- size policy -------------------------------------------------------------


def test_fit_to_canvas_pads_with_the_mean_and_scales_large_images_down():
    image = np.random.default_rng(0).integers(0, 256, (1, 30, 50, 3)).astype("uint8")
    canvas, content = export.fit_to_canvas(image, (40, 60))
    assert canvas.shape == (1, 40, 60, 3) and tuple(content.numpy()) == (30, 50)
    np.testing.assert_array_equal(canvas.numpy()[:, :30, :50], image.astype("float32"))
    np.testing.assert_allclose(
        canvas.numpy()[0, 30:, :], np.broadcast_to(IMAGENET_MEAN, (10, 60, 3)), rtol=1e-6
    )
    np.testing.assert_allclose(normalize_image(canvas).numpy()[0, 35:, 55:], 0.0, atol=1e-6)

    canvas, content = export.fit_to_canvas(image, (20, 60))  # too tall: scaled by 2/3
    assert tuple(content.numpy()) == (20, 33)
    logits = tf.random.normal((1, 20, 60, 4))
    restored = export.restore_size(logits, content, tf.constant([30, 50]))
    assert restored.shape == (1, 30, 50, 4)
    same = export.restore_size(logits, tf.constant([20, 33]), tf.constant([20, 33]))
    np.testing.assert_array_equal(same.numpy(), logits.numpy()[:, :20, :33])


# --- argument checks ----------------------------------------------------------


def test_bad_arguments_raise_clear_errors(tmp_path):
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo")
    with pytest.raises(ValueError, match="quantization"):
        export.export_tflite(model, tmp_path / "m.tflite", quantization="int4")
    with pytest.raises(ValueError, match="representative_images"):
        export.export_tflite(model, tmp_path / "m.tflite", quantization="int8")
    with pytest.raises(ValueError, match=r"\.tflite"):
        export.export_tflite(model, tmp_path / "m.lite")
    with pytest.raises(ValueError, match="image_size"):
        export.export_saved_model(model, tmp_path / "sm", image_size=(0, 5))
    with pytest.raises(ValueError, match="formats"):
        export.export_and_verify(
            model, tmp_path, images=[np.zeros((8, 8, 3), "uint8")], formats=["coreml"]
        )
    with pytest.raises(ValueError, match="uint8"):
        export.verify_tflite(tmp_path / "m.tflite", model, [np.zeros((8, 8, 3), "float32")])
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export.load_model(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        export.load_images(image_paths=[str(tmp_path / "nothing_here*.jpg")])
    with pytest.raises(ValueError, match="exactly one"):
        export.load_images()


# --- SavedModel ---------------------------------------------------------------


def test_serving_bytes_decodes_jpegs_to_label_maps_of_the_original_size(
    trained_model, demo_root, tmp_path
):
    path = export.export_saved_model(trained_model, tmp_path / "saved_model")
    loaded = tf.saved_model.load(str(path))
    assert {"serving_default", "serving_bytes", "serving_images", "serving_images_uint8"} <= set(
        loaded.signatures
    )

    jpeg_paths = [os.path.join(demo_root, "JPEGImages", f"demo_{i:05d}.jpg") for i in (32, 33)]
    encoded = [open(p, "rb").read() for p in jpeg_paths]
    served = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    for index, jpeg in enumerate(encoded):
        image = decode_image(tf.constant(jpeg), "test").numpy()  # the training pipeline's decoder
        height, width = image.shape[:2]
        assert tuple(served["image_size"].numpy()[index]) == (height, width)
        labels = served["labels"].numpy()[index]
        expected = keras_labels(trained_model, image)
        assert np.mean(labels[:height, :width] == expected) >= 0.999
        assert np.all(labels[height:] == -1) and np.all(labels[:, width:] == -1)
        probabilities = served["probabilities"].numpy()[index, :height, :width]
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    default = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded[:1]))[
        "labels"
    ].numpy()[0]
    np.testing.assert_array_equal(
        default, served["labels"].numpy()[0][: default.shape[0], : default.shape[1]]
    )

    image = decode_image(tf.constant(encoded[0]), "test").numpy()[None]
    as_float = loaded.signatures["serving_images"](images=tf.constant(image, tf.float32))
    as_uint8 = loaded.signatures["serving_images_uint8"](images=tf.constant(image))
    np.testing.assert_allclose(as_uint8["logits"].numpy(), as_float["logits"].numpy(), atol=1e-5)
    assert expects_raw_pixels(trained_model)  # raw pixels: fed the decoded image as it is
    reference = trained_model(tf.constant(image, tf.float32)).numpy()
    np.testing.assert_allclose(as_float["logits"].numpy(), reference, atol=1e-4)


def test_saved_model_on_a_fixed_canvas_returns_original_sizes(trained_model, val_images, tmp_path):
    size = (48, 48)  # val images are 48..72 px: some fit, some are scaled down
    path = export.export_saved_model(trained_model, tmp_path / "saved_model", image_size=size)
    report = export.verify_saved_model(path, trained_model, val_images, image_size=size)
    assert report.passed, report
    assert report.max_abs_logit_diff < 1e-3
    served = tf.saved_model.load(str(path)).signatures["serving_images"](
        images=tf.constant(val_images[0][None], tf.float32)
    )
    assert served["labels"].shape == (1,) + val_images[0].shape[:2]


# --- TFLite -------------------------------------------------------------------


def test_dynamic_size_tflite_runs_on_two_sizes(trained_model, tmp_path):
    path = export.export_tflite(trained_model, tmp_path / "dynamic.tflite", image_size=None)
    runner = export.tflite_interpreter(path).get_signature_runner()
    assert list(runner.get_input_details()["image"]["shape_signature"][1:3]) == [-1, -1]
    rng = np.random.default_rng(0)
    for height, width in ((40, 56), (67, 45)):
        pixels = rng.integers(0, 256, (1, height, width, 3)).astype("float32")
        logits = runner(image=pixels)["logits"]
        assert logits.shape == (1, height, width, 21)
        reference = trained_model(pixels).numpy()
        np.testing.assert_allclose(logits, reference, atol=1e-4)


def test_tflite_normalises_once_whichever_input_the_model_takes(trained_model, tmp_path):
    normalised_input = EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo", include_preprocessing=False
    )
    plain = EMANetImageSegmenter.from_config(
        {**trained_model.get_config(), "backbone": normalised_input.backbone, "name": "plain"}
    )
    plain.set_weights(trained_model.get_weights())  # the same weights, normalised input
    image = np.random.default_rng(2).integers(0, 256, (40, 48, 3)).astype("uint8")
    for model in (trained_model, plain):
        wrapped = export.pixel_model(model, (40, 48))
        normalisations = [
            layer for layer in wrapped._flatten_layers(recursive=True)
            if type(layer).__name__ == "ImageNormalization"
        ]
        assert len(normalisations) == 1
        path = export.export_tflite(model, tmp_path / f"{model.name}.tflite", image_size=(40, 48))
        logits = export.tflite_interpreter(path).get_signature_runner()(
            image=image[None].astype("float32")
        )["logits"]
        reference = trained_model(image[None].astype("float32")).numpy()
        np.testing.assert_allclose(logits, reference, atol=1e-4)


def test_aux_head_models_export_only_the_main_logits(tmp_path):
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", aux_head=True)
    path = export.export_tflite(model, tmp_path / "aux.tflite", image_size=(40, 48))
    runner = export.tflite_interpreter(path).get_signature_runner()
    assert list(runner.get_output_details()) == ["logits"]
    image = np.random.default_rng(1).integers(0, 256, (40, 48, 3)).astype("uint8")
    report = export.verify_tflite(path, model, [image])
    assert report.passed and report.max_abs_logit_diff < 1e-4


@pytest.mark.slow
def test_verification_fails_when_the_file_holds_perturbed_weights(
    trained_model, val_images, tmp_path
):
    good = export.export_tflite(trained_model, tmp_path / "good.tflite", image_size=CANVAS)
    bad = export.export_tflite(
        perturbed_copy(trained_model), tmp_path / "bad.tflite", image_size=CANVAS
    )
    good_report = export.verify_tflite(good, trained_model, val_images)
    bad_report = export.verify_tflite(bad, trained_model, val_images)
    assert good_report.passed and good_report.max_abs_logit_diff < 1e-4
    assert not bad_report.passed
    assert bad_report.pixel_agreement < 0.99 and bad_report.max_abs_logit_diff > 0.1


def test_export_and_verify_never_publishes_a_failing_file(
    trained_model, val_images, tmp_path, monkeypatch
):
    stale = tmp_path / "emanet_fp32.tflite"
    stale.write_bytes(b"an older export that must not pass for this one")
    real_export = workflow.export_tflite
    monkeypatch.setattr(
        workflow,
        "export_tflite",
        lambda model, path, **kw: real_export(perturbed_copy(model), path, **kw),
    )
    with pytest.raises(export.ExportVerificationError, match="tflite_fp32") as raised:
        export.export_and_verify(
            trained_model,
            tmp_path,
            images=val_images,
            formats=["tflite_fp32"],
            image_size=CANVAS,
            print_table=False,
        )
    (report,) = raised.value.reports
    assert not report.passed and report.path.endswith("emanet_fp32.FAILED.tflite")
    assert not stale.exists() and not (tmp_path / "emanet_fp32.partial.tflite").exists()
    assert (tmp_path / "emanet_fp32.FAILED.tflite").exists()
    assert json.loads((tmp_path / "verification.json").read_text())["reports"][0]["passed"] is False


def test_a_file_the_interpreter_cannot_run_is_reported_and_kept_as_failed(tmp_path, monkeypatch):
    def refuse(path, model, images, **kwargs):
        raise RuntimeError("tflite/kernels/div.cc: data[i] != zero_point")

    monkeypatch.setattr(workflow, "verify_tflite", refuse)
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo")
    image = np.random.default_rng(2).integers(0, 256, (32, 40, 3)).astype("uint8")
    with pytest.raises(export.ExportVerificationError, match="ERROR: RuntimeError") as raised:
        export.export_and_verify(
            model,
            tmp_path,
            images=[image],
            formats=["tflite_fp32"],
            image_size=(32, 40),
            print_table=False,
        )
    (report,) = raised.value.reports
    assert not report.passed and "div.cc" in report.error
    assert report.path.endswith("emanet_fp32.FAILED.tflite") and report.size_bytes > 0
    assert not (tmp_path / "emanet_fp32.tflite").exists()


@pytest.mark.slow
def test_every_variant_exports_and_passes_verification(
    trained_model_path, val_images, calibration_images, tmp_path, capsys
):
    reports = export.export_and_verify(
        trained_model_path,
        tmp_path,
        images=val_images,
        representative_images=calibration_images,
        image_size=CANVAS,
    )
    by_format = {report.format: report for report in reports}
    assert list(by_format) == list(export.DEFAULT_FORMATS)
    for name, report in by_format.items():
        assert report.passed, report
        assert report.pixel_agreement >= export.DEFAULT_THRESHOLDS[name]
        assert os.path.exists(report.path) and report.size_bytes > 0 and report.latency_ms > 0
    assert by_format["saved_model"].max_abs_logit_diff < 1e-4
    assert by_format["tflite_fp32"].max_abs_logit_diff < 1e-4
    sizes = {name: report.size_bytes for name, report in by_format.items()}
    assert sizes["tflite_fp16"] < 0.6 * sizes["tflite_fp32"]
    assert sizes["tflite_int8"] < 0.4 * sizes["tflite_fp32"]
    assert sizes["tflite_dynamic_int8"] < 0.4 * sizes["tflite_fp32"]
    assert not [name for name in os.listdir(tmp_path) if "partial" in name or "FAILED" in name]

    # Builtin ops only, with the EM iterations as BATCH_MATMUL / SOFTMAX.
    for name in ("tflite_fp32", "tflite_int8"):
        ops = tflite_ops(by_format[name].path)
        assert not [op for op in ops if "Flex" in op or "CUSTOM" in op], ops
        assert {"BATCH_MATMUL", "SOFTMAX", "RESIZE_BILINEAR", "CONV_2D"} <= ops
    # Full-integer int8: raw uint8 pixels in (scale 1, zero point 0), int8 logits out.
    runner = export.tflite_interpreter(by_format["tflite_int8"].path).get_signature_runner()
    image_details = runner.get_input_details()["image"]
    assert image_details["dtype"] == np.uint8 and image_details["quantization"] == (1.0, 0)
    assert runner.get_output_details()["logits"]["dtype"] == np.int8

    table = capsys.readouterr().out
    assert table.count("| pass |") == len(export.DEFAULT_FORMATS) and "FAIL" not in table


@pytest.mark.slow
def test_cli_prints_the_table_and_exits_non_zero_below_threshold(
    trained_model_path, demo_root, tmp_path
):
    def run(*extra):
        command = [
            sys.executable,
            os.path.join(REPO, "export", "export_model.py"),
            f"--model={trained_model_path}",
            f"--data_dir={demo_root}",
            f"--output_dir={tmp_path}",
            "--image_size=72,72",
            "--num_images=4",
            "--num_calibration_images=8",
            *extra,
        ]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)

    passing = run("--formats=tflite_fp32")
    assert passing.returncode == 0, passing.stderr[-2000:]
    assert "| tflite_fp32 |" in passing.stdout and "| pass |" in passing.stdout
    assert os.path.exists(tmp_path / "emanet_fp32.tflite")

    # Demanding perfect int8 agreement cannot be met: the CLI must say so and fail.
    failing = run("--formats=tflite_int8", "--int8_threshold=1.0")
    assert failing.returncode == 1
    assert "FAIL" in failing.stdout and "Verification failed" in failing.stderr
    assert not os.path.exists(tmp_path / "emanet_int8.tflite")
    assert os.path.exists(tmp_path / "emanet_int8.FAILED.tflite")
