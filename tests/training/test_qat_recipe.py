"""--qat_steps through train_voc.py under mirrored (issue 23): the int8 fine-tune after training.

The run writes qat.keras beside last.keras: a quantization-aware copy that
loads after a bare `import ema_keras`, whose every activation range was set by
the fine-tune (a copy that was never fitted has empty ranges and outputs
zeros), whose optimizer took exactly --qat_steps steps, and whose validation
score is in summary.json. A finished run asked again for the stage gets only
the stage; bad settings are refused before anything is written.
"""

import json
import os

import keras
import numpy as np
import pytest

import ema_keras  # noqa: F401  (what a user's script imports before load_model)
from ema_keras.quantization import activation_quantizers, is_quantization_aware
from tests.cli_testing import run_program
from tests.tiny_recipe import TINY_TRAINING
from tests.training.test_refusals_before_writing import files_under, refusal

QAT_STEPS = 2


def tiny_flags(data_dir, model_dir, *extra):
    settings = dict(TINY_TRAINING, steps=2, steps_per_checkpoint=2)
    return [f"--{name}={value}" for name, value in settings.items()] + [
        "--recipe=demo_mobile", f"--data_dir={data_dir}", "--strategy=mirrored",
        f"--model_dir={model_dir}", *extra,
    ]  # fmt: skip


def modified_times(model_dir, *names):
    return {name: os.path.getmtime(os.path.join(model_dir, name)) for name in names}


@pytest.mark.slow  # two runs of the mobile preset through the CLI (~1 min)
def test_qat_steps_through_the_cli_under_mirrored(tmp_path, small_demo_voc):
    model_dir = str(tmp_path / "run")
    flags = tiny_flags(small_demo_voc, model_dir, f"--qat_steps={QAT_STEPS}")
    assert run_program("train_voc.py", *flags) == 0

    qat_path = os.path.join(model_dir, "qat.keras")
    qat = keras.models.load_model(qat_path)
    assert is_quantization_aware(qat)
    assert int(qat.optimizer.iterations) == QAT_STEPS
    quantizers = activation_quantizers(qat)
    assert len(quantizers) > 20
    for quantizer in quantizers:  # every range learnt from the training batches
        assert float(quantizer.calibrated) == 1.0, quantizer.name
        assert float(quantizer.range_max) > float(quantizer.range_min), quantizer.name
    # The fine-tune moved the weights off the float model's (folded) ones.
    float_model = keras.models.load_model(os.path.join(model_dir, "last.keras"))
    images = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    assert not np.allclose(qat.predict(images, verbose=0), float_model.predict(images, verbose=0))
    with open(os.path.join(model_dir, "summary.json")) as file:
        summary = json.load(file)
    assert summary["step"] == 2 and 0.0 <= summary["qat_val_mean_iou"] <= 1.0

    # Asked again: the run is finished and its copy written, nothing is redone.
    written = modified_times(model_dir, "qat.keras", "last.keras")
    assert run_program("train_voc.py", *flags) == 0
    assert modified_times(model_dir, "qat.keras", "last.keras") == written
    # Without its copy (a stage cut off), the finished run gets the stage alone.
    os.remove(qat_path)
    assert run_program("train_voc.py", *flags) == 0
    assert modified_times(model_dir, "last.keras") == {"last.keras": written["last.keras"]}
    again = keras.models.load_model(qat_path)
    assert int(again.optimizer.iterations) == QAT_STEPS


@pytest.mark.parametrize(
    "flag, value", [("qat_steps", "-1"), ("qat_learning_rate", "0"), ("qat_learning_rate", "nan")]
)
def test_bad_qat_settings_are_refused_before_anything_is_written(
    tmp_path, capsys, small_demo_voc, flag, value
):
    model_dir = tmp_path / "run"
    status = run_program(
        "train_voc.py", *tiny_flags(small_demo_voc, model_dir, f"--{flag}={value}")
    )
    refusal(capsys, status, "train_voc.py: ", f"--{flag}")
    assert files_under(model_dir) == []
