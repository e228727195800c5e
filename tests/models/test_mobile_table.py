"""bench/mobile_table.py: every runtime of one preset measured at a small size in one call."""

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))

import mobile_table  # noqa: E402

from ema_keras import cost  # noqa: E402
from ema_keras.models import build_preset  # noqa: E402


@pytest.mark.slow
def test_small_preset_gets_keras_tflite_float32_and_int8_latencies(tmp_path):
    """Keras float32 in a fresh process, both TFLite files, at 64x64 (40-80 s)."""
    preset = "emanet_mobilenetv3_small_voc"
    cells, params, macs, megabytes = mobile_table.measure_preset(
        preset, [64], [1], calibration=2, runs=2, folder=str(tmp_path),
        formats=mobile_table.FORMATS,
    )  # fmt: skip
    assert sorted(cells) == sorted(mobile_table.FORMATS)
    for name, latencies in cells.items():
        assert len(latencies) == 1 and 0.0 < latencies[0] < 10_000.0, (name, latencies)
    counted = cost.model_cost(build_preset(preset, image_shape=(64, 64, 3)))["total"]
    assert (params, macs) == (counted.params, counted.macs)
    # int8 weights take a quarter of float32's bytes; the graph adds the same to both.
    assert 0.2 < megabytes["TFLite int8"] / megabytes["TFLite float32"] < 0.45
    files = [f"{preset}_64_{kind}.tflite" for kind in ("float32", "int8")]
    assert sorted(os.listdir(tmp_path)) == files
