"""The precision choice: CPU detection, auto's fallbacks, the agreement check."""

import numpy as np
import pytest

from ema_keras.inference import precision as precision_module
from ema_keras.inference.precision import (
    AGREEMENT_THRESHOLD,
    PrecisionRefusedError,
    argmax_agreement,
    cpu_flags,
    fastest_precision,
    inference_model,
)
from tests.inference.test_folding import images, tiny_emanet, trained_statistics

ZEN4 = frozenset("fma avx2 avx512f avx512_bf16 avx512_vnni".split())
SAPPHIRE_RAPIDS = frozenset("avx512f avx512_fp16 amx_bf16 amx_tile".split())
SKYLAKE = frozenset("fma avx2 avx512f avx512_vnni".split())
ONEDNN_ON, ONEDNN_OFF = {}, {"TF_ENABLE_ONEDNN_OPTS": "0"}


def test_cpu_flags_reads_a_cpuinfo_file(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512f avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(str(cpuinfo)) == {"fpu", "avx512f", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize(
    "flags, environ, backend, gpu, expected",
    [
        (ZEN4, ONEDNN_ON, "tensorflow", False, "bfloat16"),
        (SAPPHIRE_RAPIDS, ONEDNN_ON, "tensorflow", False, "bfloat16"),
        (SKYLAKE, ONEDNN_ON, "tensorflow", False, "float32"),
        (ZEN4, ONEDNN_OFF, "tensorflow", False, "float32"),
        (ZEN4, {"TF_ENABLE_ONEDNN_OPTS": "1"}, "tensorflow", False, "bfloat16"),
        (ZEN4, ONEDNN_ON, "tensorflow", True, "float32"),
        (ZEN4, ONEDNN_ON, "jax", False, "float32"),
    ],
)
def test_fastest_precision(flags, environ, backend, gpu, expected):
    chosen, reason = fastest_precision(flags, environ=environ, backend=backend, gpu=gpu)
    assert chosen == expected and reason


def test_argmax_agreement_counts_pixels():
    a = [np.array([[0, 1], [2, 3]]), np.zeros((1, 4))]
    b = [np.array([[0, 1], [2, 0]]), np.zeros((1, 4))]
    assert argmax_agreement(a, b) == 7 / 8
    with pytest.raises(ValueError):
        argmax_agreement([], [])


@pytest.fixture(scope="module")
def model():
    return trained_statistics(tiny_emanet())


def label_maps(m):
    return [m(images(seed=s), training=False).numpy().argmax(-1) for s in (0, 1)]


def test_float32_is_the_folded_model(model):
    choice = inference_model(model, "float32")
    assert choice.precision == "float32" and choice.agreement is None
    x = images()
    reference = model(x, training=False).numpy()
    np.testing.assert_allclose(
        choice.model(x).numpy(), reference, atol=1e-4 * np.abs(reference).max(), rtol=0
    )
    assert "float32" in choice.describe()


def test_auto_picks_bfloat16_only_where_it_is_native_and_checked(model, monkeypatch):
    monkeypatch.setattr(precision_module, "fastest_precision", lambda *a, **k: ("bfloat16", "x"))
    unchecked = inference_model(model, "auto")
    assert unchecked.precision == "float32" and "no images" in unchecked.reason
    # A threshold every bfloat16 model passes, then one none can.
    chosen = inference_model(model, "auto", check=label_maps, threshold=0.0)
    assert chosen.precision == "bfloat16" and 0.0 < chosen.agreement <= 1.0
    assert chosen.model.get_layer("pre_ema_conv").compute_dtype == "bfloat16"
    refused = inference_model(model, "auto", check=label_maps, threshold=1.01)
    assert refused.precision == "float32" and "below the 101.0% threshold" in refused.reason
    assert refused.model.get_layer("pre_ema_conv").compute_dtype == "float32"


def test_auto_on_a_cpu_without_bfloat16_is_float32(model):
    choice = inference_model(model, "auto", check=label_maps, flags=SKYLAKE, environ=ONEDNN_ON)
    assert choice.precision == "float32" and "no native bfloat16" in choice.reason


def test_explicit_bfloat16_below_the_threshold_is_refused_in_one_line(model):
    with pytest.raises(PrecisionRefusedError, match=r"^bfloat16 agrees .*% threshold; use float32"):
        inference_model(model, "bfloat16", check=label_maps, threshold=1.01)
    kept = inference_model(model, "bfloat16", check=label_maps, threshold=0.5)
    assert kept.precision == "bfloat16" and kept.agreement >= 0.5
    assert AGREEMENT_THRESHOLD == 0.995


def test_unknown_precision_is_refused(model):
    with pytest.raises(ValueError, match="auto, float32, bfloat16.*'int8'"):
        inference_model(model, "int8")


def test_predict_program_prints_its_precision_and_refuses_below_the_threshold(
    model, tmp_path, capsys, monkeypatch
):
    from PIL import Image

    from tests.cli_testing import run_program

    path = tmp_path / "m.keras"
    model.save(path)
    inputs = tmp_path / "images"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(inputs / f"{name}.png")
    args = [f"--model={path}", f"--inputs={inputs}", "--precision=bfloat16"]
    monkeypatch.setattr(precision_module, "argmax_agreement", lambda *a: 0.9)
    status = run_program("predict.py", *args, f"--output_dir={tmp_path / 'refused'}")
    error = capsys.readouterr().err.strip()
    assert status == 2 and not (tmp_path / "refused").exists()
    assert error == (
        "predict.py: --precision bfloat16: bfloat16 agrees with float32 on 90.00% of the check "
        "pixels, below the 99.5% threshold; use float32."
    )
    monkeypatch.setattr(precision_module, "argmax_agreement", lambda *a: 0.998)
    assert run_program("predict.py", *args, f"--output_dir={tmp_path / 'out'}") == 0
    printed = capsys.readouterr().out
    assert "precision bfloat16 (BatchNorm folded, 99.80% argmax agreement" in printed
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "b.png"]


def test_eval_program_runs_the_precision_it_prints(tmp_path, capsys):
    from tests.cli_testing import run_program
    from tests.data.conftest import write_voc

    path = tmp_path / "m.keras"
    trained_statistics(tiny_emanet(num_classes=21)).save(path)
    voc_root, _ = write_voc(str(tmp_path), {"val": ["v0", "v1", "v2"]})
    common = [f"--model={path}", f"--data_dir={voc_root}"]
    assert run_program("eval_voc.py", *common) == 0
    float32 = capsys.readouterr().out
    assert "precision float32 (BatchNorm folded; default)" in float32  # nobody asked
    assert run_program("eval_voc.py", *common, "--precision=float32") == 0
    assert "precision float32 (BatchNorm folded; asked for)" in capsys.readouterr().out
    assert run_program("eval_voc.py", *common, "--precision=bfloat16") == 0
    bfloat16 = capsys.readouterr().out
    assert "precision bfloat16" in bfloat16 and "argmax agreement with float32" in bfloat16
    assert "mIoU:" in bfloat16
