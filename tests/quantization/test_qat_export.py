"""QAT on the Small mobile preset, then its int8 file: learnt ranges, agreement, op list, reload.

One float model trained a little on a small demo set, one QAT fine-tune of it
and one export, shared by the tests (module fixtures): what they check is the
chain, not the accuracy of a model trained for seconds.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest

from ema_keras.data import read_voc_split, train_dataset, write_demo_dataset
from ema_keras.export import QAT_FORMAT, export_and_verify, load_images, tflite_operators
from ema_keras.models import EMANetImageSegmenter
from ema_keras.quantization import (
    QuantizedEMAUnit,
    activation_quantizers,
    fine_tune,
    quantization_aware_model,
)

CROP = 64
FLOAT_STEPS = 30
QAT_STEPS = 6


def ranges(model):
    return {q.path: (float(q.range_min.numpy()), float(q.range_max.numpy()))
            for q in activation_quantizers(model)}  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = write_demo_dataset(
        tmp_path_factory.mktemp("qat_demo"), num_train=16, num_val=4, image_size=(64, 80), seed=5
    )
    dataset = train_dataset(
        read_voc_split(root, "train"), batch_size=8, crop_size=CROP, scales=(1.0,), seed=0,
        cache=True, num_classes=21,
    )  # fmt: skip
    return root, dataset


@pytest.fixture(scope="module")
def trained(demo):
    _, dataset = demo
    keras.utils.set_random_seed(0)
    model = EMANetImageSegmenter.from_preset("emanet_mobilenetv3_small_voc", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(dataset, steps_per_epoch=FLOAT_STEPS, epochs=1, verbose=0)
    qat = quantization_aware_model(model)
    fine_tune(qat, dataset, 1)
    first_ranges = ranges(qat)
    first_kernel = qat.get_layer("classifier_low").kernel.numpy().copy()
    fine_tune(qat, dataset, QAT_STEPS - 1)
    return model, qat, first_ranges, first_kernel


@pytest.fixture(scope="module")
def exported(demo, trained, tmp_path_factory):
    root, _ = demo
    model, qat, _, _ = trained
    output_dir = tmp_path_factory.mktemp("qat_export")
    reports = export_and_verify(
        model, output_dir, formats=(), qat_model=qat, image_size=(CROP, CROP),
        images=load_images(data_dir=root, split="val"),
        representative_images=load_images(data_dir=root, split="train", limit=4),
        thresholds={QAT_FORMAT: 0.0}, print_table=False,
    )  # fmt: skip
    return {report.format: report for report in reports}


def test_the_copy_is_folded_and_holds_the_quantized_ema_unit(trained):
    model, qat, _, _ = trained
    layers = qat.layers
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in layers)
    assert sum(isinstance(layer, QuantizedEMAUnit) for layer in layers) == 1
    assert qat.input_shape == model.input_shape and qat.output_shape == model.output_shape


def test_ranges_are_learnt_by_moving_average(trained):
    _, qat, first_ranges, first_kernel = trained
    learnt = ranges(qat)
    assert all(q.calibrated.numpy() == 1.0 for q in activation_quantizers(qat))
    # Every range left its zero initial value, and the later steps moved it.
    assert all(high > low for low, high in learnt.values())
    moved = [path for path in learnt if not np.allclose(learnt[path], first_ranges[path])]
    assert len(moved) >= 0.8 * len(learnt)
    # The weights train too (straight-through gradients through the rounding).
    assert not np.allclose(qat.get_layer("classifier_low").kernel.numpy(), first_kernel)


def test_the_int8_file_agrees_with_the_qat_model_and_the_float_model(exported):
    against_qat, against_float = exported[QAT_FORMAT], exported[f"{QAT_FORMAT}_vs_float"]
    assert against_qat.error is None and against_qat.path.endswith("emanet_int8_qat.tflite")
    # The file computes what the QAT model computes: much closer to it than to float.
    assert against_qat.pixel_agreement >= 0.98
    assert against_float.pixel_agreement >= 0.9
    assert against_qat.max_abs_logit_diff < against_float.max_abs_logit_diff


def test_the_int8_file_has_no_float_islands(exported):
    operators = tflite_operators(exported[QAT_FORMAT].path)
    float_ops = [name for name, dtype in operators if dtype == "float32"]
    assert not float_ops
    names = {name for name, _ in operators}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX", "L2_NORMALIZATION", "BATCH_MATMUL"} <= names
    assert {dtype for _, dtype in operators} <= {"int8", "int32"}


def test_a_saved_qat_model_loads_after_importing_ema_keras(trained, tmp_path):
    _, qat, _, _ = trained
    path = tmp_path / "qat.keras"
    qat.save(path)
    images = np.random.default_rng(0).integers(0, 256, (2, CROP, CROP, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", np.asarray(qat(images)))
    # A fresh process: `import ema_keras` alone must register every QAT class.
    program = (
        "import sys, numpy as np, ema_keras, keras\n"
        "model = keras.models.load_model(sys.argv[1])\n"
        "images, expected = np.load(sys.argv[2]), np.load(sys.argv[3])\n"
        "np.testing.assert_allclose(np.asarray(model(images)), expected, atol=1e-5)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program, str(path), str(tmp_path / "images.npy"),
         str(tmp_path / "expected.npy")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = keras.models.load_model(path)
    assert ranges(loaded) == ranges(qat)
