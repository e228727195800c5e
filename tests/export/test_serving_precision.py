"""The SavedModel in bfloat16 (`--precision`): folded, verified against float32 Keras, or
refused."""

import functools
import json
import os

import keras
import numpy as np
import pytest

from ema_keras import export
from ema_keras.export import workflow
from ema_keras.export.workflow import REPORT_FILE
from ema_keras.inference.precision import PrecisionRefusedError
from ema_keras.layers.image_normalization import ImageNormalization


def test_float32_serves_the_model_itself(trained_model, val_images):
    choice = export.serving_model(trained_model, "float32", val_images)
    assert choice.model is trained_model and choice.precision == "float32"


def test_bfloat16_serves_a_folded_bfloat16_copy_that_agrees(trained_model, val_images):
    choice = export.serving_model(trained_model, "bfloat16", val_images)
    assert choice.precision == "bfloat16" and choice.agreement >= 0.995
    # Every BatchNorm after a conv is folded; the EMA unit keeps its inner one.
    norms = [
        layer.path for layer in choice.model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]  # fmt: skip
    assert norms == ["ema_unit/output_norm"]
    compute = {layer.dtype_policy.compute_dtype for layer in choice.model.layers if layer.weights}
    assert "bfloat16" in compute
    assert any(isinstance(layer, ImageNormalization) for layer in choice.model._flatten_layers())


def test_bfloat16_below_the_threshold_is_refused_before_writing(
    trained_model, val_images, tmp_path, monkeypatch
):
    with pytest.raises(PrecisionRefusedError):
        export.serving_model(trained_model, "bfloat16", val_images, threshold=1.01)
    # Through the export: an agreement no model reaches stops it before the folder exists.
    strict = functools.partial(workflow.serving_model, threshold=1.01)
    monkeypatch.setattr(workflow, "serving_model", strict)
    output_dir = tmp_path / "export"
    with pytest.raises(PrecisionRefusedError):
        export.export_and_verify(
            trained_model, str(output_dir), images=val_images, formats=["saved_model"],
            saved_model_precision="bfloat16", print_table=False,
        )  # fmt: skip
    assert not output_dir.exists()


@pytest.mark.slow
def test_bfloat16_saved_model_is_verified_and_recorded(trained_model, val_images, tmp_path):
    reports = export.export_and_verify(
        trained_model, str(tmp_path), images=val_images, formats=["saved_model"],
        saved_model_precision="bfloat16", print_table=False,
    )  # fmt: skip
    (report,) = reports
    assert report.passed and report.threshold == 0.995 and report.pixel_agreement >= 0.995
    assert report.max_abs_logit_diff > 0  # computed in bfloat16, not the float32 graph again
    with open(os.path.join(tmp_path, REPORT_FILE)) as handle:
        assert json.load(handle)["saved_model_precision"] == "bfloat16"
    assert np.isfinite(report.latency_ms)


@pytest.mark.slow
def test_cli_precision_flag_reaches_the_saved_model_and_refuses_unknown_values(
    trained_model_path, demo_root, tmp_path, capsys
):
    from tests.cli_testing import run_program

    common = [
        f"--model={trained_model_path}", f"--data_dir={demo_root}", "--num_images=2",
        "--formats=saved_model", "--serving_size=72,72",
    ]  # fmt: skip
    refused = tmp_path / "refused"
    status = run_program("export_model.py", *common, f"--output_dir={refused}", "--precision=int4")
    assert status == 2
    assert "--precision" in capsys.readouterr().err and not refused.exists()

    out = tmp_path / "bf16"
    status = run_program("export_model.py", *common, f"--output_dir={out}", "--precision=bfloat16")
    assert status == 0
    assert "SavedModel: precision bfloat16" in capsys.readouterr().out
    with open(out / REPORT_FILE) as handle:
        assert json.load(handle)["saved_model_precision"] == "bfloat16"
