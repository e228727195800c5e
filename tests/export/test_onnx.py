"""ONNX export: raw pixels in, checked with onnxruntime against Keras, published if it passes."""

import collections
import json
import os

import numpy as np
import pytest

from ema_keras import export
from ema_keras.export import onnx as onnx_export
from ema_keras.export.verification import keras_logits
from tests.cli_testing import run_program

pytest.importorskip("tf2onnx", reason="the onnx extra is not installed: pip install '.[onnx]'")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install '.[onnx]'")

# The demo images are 48x72: this canvas pads their height and scales their width down.
CANVAS = (56, 64)


def test_fixed_size_file_matches_keras_on_a_canvas(trained_model, val_images, tmp_path):
    path = export.export_onnx(trained_model, tmp_path / "emanet.onnx", image_size=CANVAS)
    session = export.onnx_session(path)
    (image_input,), outputs = session.get_inputs(), session.get_outputs()
    assert image_input.name == "image" and image_input.type == "tensor(float)"
    assert image_input.shape[1:] == [*CANVAS, 3]
    assert [output.name for output in outputs] == ["logits"]

    report = export.verify_onnx(path, trained_model, val_images)
    assert report.passed and report.format == "onnx" and report.num_images == len(val_images)
    assert report.pixel_agreement >= 0.999 and report.max_abs_logit_diff < 1e-4
    assert report.size_bytes == os.path.getsize(path) and report.latency_ms > 0

    # The batch is dynamic: two raw-pixel images at once give Keras' logits.
    pixels = np.random.default_rng(0).uniform(0, 255, (2, *CANVAS, 3)).astype("float32")
    (logits,) = session.run(["logits"], {"image": pixels})
    reference = keras_logits(trained_model, pixels)
    assert logits.shape == reference.shape == (2, *CANVAS, trained_model.num_classes)
    np.testing.assert_allclose(logits, reference, atol=1e-4 * np.abs(reference).max())


def test_dynamic_size_file_runs_every_image_at_its_own_size(trained_model, tmp_path):
    path = export.export_onnx(trained_model, tmp_path / "dynamic.onnx", image_size=None)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size).astype("uint8") for size in [(40, 56, 3), (33, 47, 3)]]
    report = export.verify_onnx(path, trained_model, images)
    assert report.passed and report.max_abs_logit_diff < 1e-4
    (logits,) = export.onnx_session(path).run(["logits"], {"image": images[1][None].astype("f4")})
    assert logits.shape == (1, 33, 47, trained_model.num_classes)


def test_verification_fails_for_a_file_of_other_weights(trained_model, val_images, tmp_path):
    # The same network with noise of the weights' own scale on its classifier.
    other = trained_model.__class__.from_config(trained_model.get_config())
    other.set_weights(trained_model.get_weights())
    kernel = other.get_layer("classifier_conv").kernel
    noise = np.random.default_rng(0).normal(0.0, float(np.std(kernel.numpy())), kernel.shape)
    kernel.assign(kernel.numpy() + noise.astype("float32"))
    path = export.export_onnx(other, tmp_path / "other.onnx", image_size=CANVAS)
    report = export.verify_onnx(path, trained_model, val_images)
    assert not report.passed and report.pixel_agreement < 0.99
    assert report.max_abs_logit_diff > 0.1


def test_cli_exports_verifies_and_publishes_the_onnx_file(
    trained_model_path, demo_root, tmp_path, capsys
):
    status = run_program(
        "export_model.py",
        f"--model={trained_model_path}",
        f"--data_dir={demo_root}",
        f"--output_dir={tmp_path}",
        "--formats=onnx",
        "--num_images=2",
        f"--image_size={CANVAS[0]},{CANVAS[1]}",
    )
    assert status == 0 and "| onnx |" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["emanet.onnx", "verification.json"]
    (saved,) = json.loads((tmp_path / "verification.json").read_text())["reports"]
    assert saved["format"] == "onnx" and saved["passed"] is True and saved["num_images"] == 2
    assert "onnx" not in export.DEFAULT_FORMATS and "onnx" in export.FORMATS


def test_missing_extra_is_one_line_naming_the_package_before_anything_is_written(
    trained_model, trained_model_path, tmp_path, monkeypatch, capsys
):
    real_find_spec = onnx_export.importlib.util.find_spec
    monkeypatch.setattr(
        onnx_export.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "tf2onnx" else real_find_spec(name, *args),
    )
    assert onnx_export.missing_packages() == ["tf2onnx"]
    output_dir = tmp_path / "export"
    image = np.zeros((8, 8, 3), "uint8")
    with pytest.raises(ImportError, match=r"needs tf2onnx .*pip install 'ema-keras\[onnx\]'"):
        export.export_and_verify(trained_model_path, output_dir, images=[image], formats=["onnx"])
    with pytest.raises(ImportError, match="tf2onnx"):
        export.export_onnx(trained_model, tmp_path / "m.onnx")
    assert not output_dir.exists() and not (tmp_path / "m.onnx").exists()

    status = run_program(
        "export_model.py",
        f"--model={trained_model_path}",
        f"--output_dir={output_dir}",
        f"--images={tmp_path}/*.jpg",
        "--formats=saved_model,onnx",
    )
    error = capsys.readouterr().err.strip()
    assert status == 2 and not output_dir.exists()
    assert error == (
        "export_model.py: --formats onnx needs tf2onnx: pip install 'ema-keras[onnx]' "
        "(or leave onnx out of --formats)"
    )


def test_cli_rejects_unknown_formats_and_the_wrong_file_name(trained_model, tmp_path, capsys):
    status = run_program(
        "export_model.py",
        "--model=unused.keras",
        f"--output_dir={tmp_path}",
        f"--images={tmp_path}/*.jpg",
        "--formats=onnx,coreml",
    )
    assert status == 2
    assert "--formats coreml unknown; use 'all' or some of" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"\.onnx"):
        export.export_onnx(trained_model, tmp_path / "emanet.pb")


def test_mobile_model_converts_cleanly_and_matches_keras(tmp_path):
    import onnx

    from ema_keras.models import EMANetImageSegmenter

    model = EMANetImageSegmenter.from_preset("emanet_mobilenetv3_small_voc", num_classes=3, seed=0)
    path = export.export_onnx(model, tmp_path / "mobile.onnx", image_size=(64, 64))
    # Hard-swish's `x + 3` reaches tf2onnx as a (1,) constant, so its transpose
    # optimizer runs: a scalar makes it fail and leave two Transposes per conv
    # (120 for 57 convs; 11 remain when it runs).
    op_types = collections.Counter(node.op_type for node in onnx.load(path).graph.node)
    assert op_types["Conv"] > 50 and op_types["Transpose"] < 20, op_types
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (64, 64, 3)).astype("uint8") for _ in range(2)]
    report = export.verify_onnx(path, model, images)
    assert report.passed and report.max_abs_logit_diff < 1e-4
