"""Distributed evaluation equals one-device evaluation: the same integer confusion matrix.

Mirrored runs on the session's two logical CPUs (tests/conftest.py), two workers of
MultiWorkerMirroredStrategy as two processes of `eval_voc.py` (TF_CONFIG), and JAX's two
host devices in a program of their own (`jax_evaluation_checks.py`). The split's images
are of different sizes and their count is odd, so the replicas get different shares.
"""

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from ema_keras import cli
from ema_keras.data.voc import read_voc_split
from ema_keras.inference.distributed_evaluation import evaluate_on_replicas, tensorflow_replicas
from ema_keras.inference.evaluation import evaluate, image_confusion
from ema_keras.inference.precision import inference_model
from ema_keras.training import backends
from ema_keras.training.errors import SettingsError
from tests.backends.backend_testing import backend_environment, run_checks_program
from tests.cli_testing import REPO, run_program
from tests.data.conftest import write_voc
from tests.inference.test_folding import tiny_emanet, trained_statistics
from tests.tf_log_level import TESTS_TF_LOG_LEVEL

NUM_CLASSES = 21
NUM_IMAGES = 5
SETTINGS = {
    "single scale": {},
    "multi-scale + flip": {"scales": (0.75, 1.0, 1.25), "flip": True},
    "sliding window": {"window": 32, "stride": 20},
}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A VOC folder of 5 val images of different sizes; (VOC2012 folder, examples)."""
    root = str(tmp_path_factory.mktemp("distributed_voc"))
    voc_root, labels = write_voc(root, {"val": [f"v{i}" for i in range(NUM_IMAGES)]})
    assert len({label.shape for label in labels.values()}) > 1
    return voc_root, read_voc_split(voc_root, "val")


@pytest.fixture(scope="module")
def model():
    return trained_statistics(tiny_emanet(num_classes=NUM_CLASSES))


def counting(replicas):
    """`replicas` that also record each local replica's image count in `counts`."""
    counts = []

    def all_reduce(vectors):
        counts.extend(int(vector[-1]) for vector in vectors)
        return replicas.all_reduce(vectors)

    return dataclasses.replace(replicas, all_reduce=all_reduce), counts


def assert_same_result(distributed, reference):
    np.testing.assert_array_equal(distributed.confusion_matrix, reference.confusion_matrix)
    assert distributed.confusion_matrix.dtype == np.int64
    assert distributed.num_images == reference.num_images == NUM_IMAGES
    assert distributed.mean_iou == reference.mean_iou
    np.testing.assert_array_equal(distributed.per_class_iou, reference.per_class_iou)
    assert distributed.to_json() == reference.to_json()
    # Not a trivial agreement: the model predicts several classes.
    assert np.count_nonzero(reference.confusion_matrix.sum(axis=0)) >= 2


@pytest.mark.parametrize("name", list(SETTINGS))
def test_mirrored_equals_one_device(name, split, model, mirrored_strategy):
    _, examples = split
    # The folded float32 model, as eval_voc.py scores; the model as built at one scale
    # (its copies keep the EMANet class).
    scored = model if name == "single scale" else inference_model(model, "float32").model
    settings = dict(num_classes=NUM_CLASSES, **SETTINGS[name])
    reference = evaluate(scored, examples, **settings)
    replicas, counts = counting(tensorflow_replicas(mirrored_strategy))
    distributed = evaluate_on_replicas(scored, examples, replicas, **settings)
    assert_same_result(distributed, reference)
    assert counts == [3, 2]  # images 0, 2, 4 and 1, 3


def test_each_replica_copy_lives_on_its_device(model, mirrored_strategy):
    replicas = tensorflow_replicas(mirrored_strategy)
    assert replicas.num_replicas == 2 and replicas.replica_ids == [0, 1]
    copy = replicas.copy_model(model, replicas.devices[1])
    assert type(copy) is type(model)
    for original, copied in zip(model.weights, copy.weights):
        assert copied.value.device == replicas.devices[1], copied.path
        np.testing.assert_array_equal(copied.numpy(), original.numpy())


def test_more_replicas_than_images(split, model, mirrored_strategy):
    _, examples = split
    reference = evaluate(model, examples[:1], num_classes=NUM_CLASSES)
    replicas, counts = counting(tensorflow_replicas(mirrored_strategy))
    distributed = evaluate_on_replicas(model, examples[:1], replicas, num_classes=NUM_CLASSES)
    np.testing.assert_array_equal(distributed.confusion_matrix, reference.confusion_matrix)
    assert distributed.num_images == 1 and counts == [1, 0]


def test_image_confusion_counts_pixels_and_leaves_out_ignored_ones():
    label = np.array([[0, 1, 255], [2, 2, 1]])
    predicted = np.array([[0, 2, 1], [2, 0, 1]])
    matrix = image_confusion(label[None], np.eye(3)[predicted][None], 3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 1], [1, 0, 1]])


def _eval_command(model_path, voc_root, *flags):
    return [f"--model={model_path}", f"--data_dir={voc_root}", *flags]


def test_eval_program_under_mirrored_writes_the_one_device_result(
    split, model, tmp_path, capsys
):
    voc_root, _ = split
    path = tmp_path / "m.keras"
    model.save(path)
    flags = ["--window=32", "--stride=20", "--flip"]
    for strategy in ("one_device", "mirrored"):
        output = tmp_path / f"{strategy}.json"
        status = run_program(
            "eval_voc.py", *_eval_command(path, voc_root, *flags),
            f"--strategy={strategy}", f"--output_json={output}",
        )
        assert status == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "--strategy mirrored: 2 replicas" in printed
    assert "--strategy one_device: 1 replica" in printed
    one_device, mirrored = (
        json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one_device", "mirrored")
    )
    assert mirrored == one_device
    assert np.asarray(mirrored["confusion_matrix"]).sum() > 0


@pytest.mark.parametrize(
    "strategy,backend,message",
    [
        ("tpu", "tensorflow", "--strategy 'tpu' cannot evaluate on KERAS_BACKEND=tensorflow; use "
         "one_device or mirrored or multi_worker."),
        ("mirroredd", "tensorflow", "--strategy 'mirroredd' cannot evaluate"),
        ("multi_worker", "jax", "--strategy 'multi_worker' cannot evaluate on KERAS_BACKEND=jax; "
         "use one_device or mirrored."),
        ("mirrored", "torch", "--strategy 'mirrored' cannot evaluate on KERAS_BACKEND=torch; use "
         "one_device."),
    ],
)
def test_strategies_an_evaluation_cannot_run_are_refused(strategy, backend, message, monkeypatch):
    monkeypatch.setattr(backends, "BACKEND", backend)
    with pytest.raises(SettingsError, match="^" + re.escape(message)):
        cli.evaluation_replicas(strategy)


def test_eval_program_refuses_a_strategy_in_one_line_before_writing(
    split, model, tmp_path, capsys
):
    voc_root, _ = split
    path = tmp_path / "m.keras"
    model.save(path)
    output = tmp_path / "result.json"
    status = run_program(
        "eval_voc.py", *_eval_command(path, voc_root), "--strategy=tpu",
        f"--output_json={output}",
    )
    error = capsys.readouterr().err.strip()
    assert status == 2 and not output.exists()
    assert error.startswith("eval_voc.py: --strategy 'tpu' cannot evaluate") and "\n" not in error


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_equal_one_device(split, model, tmp_path, capsys):
    voc_root, examples = split
    path = tmp_path / "m.keras"
    model.save(path)
    flags = ["--scales=0.75,1.0", "--flip"]
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL,
                   TF_CONFIG=json.dumps(config))
        command = [
            sys.executable, os.path.join(REPO, "recipes", "eval_voc.py"),
            *_eval_command(path, voc_root, *flags), "--strategy=multi_worker",
            f"--output_json={tmp_path / f'worker_{index}.json'}",
        ]
        processes.append(subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ))
    logs = [process.communicate(timeout=300)[0] for process in processes]
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
        assert "--strategy multi_worker: 2 replicas over all workers, 1 here" in log
    # Both workers print the whole result; only the chief (worker 0) writes it.
    assert not (tmp_path / "worker_1.json").exists()
    distributed = json.loads((tmp_path / "worker_0.json").read_text())

    folded = inference_model(model, "float32").model
    reference = evaluate(folded, examples, num_classes=NUM_CLASSES, scales=(0.75, 1.0), flip=True)
    assert distributed["confusion_matrix"] == reference.confusion_matrix.tolist()
    assert distributed["num_images"] == NUM_IMAGES
    assert distributed["mean_iou"] == reference.mean_iou


@pytest.mark.slow  # about a minute: JAX compiles every op for every image size and device
def test_jax_on_two_devices_equals_one_device(split, model, tmp_path):
    pytest.importorskip("jax", reason="JAX is not installed (pip install 'jax[cpu]')")
    voc_root, _ = split
    model.save(tmp_path / "m.keras")
    env = backend_environment(
        "jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL,
        XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0",
    )
    report = run_checks_program(
        "tests.inference.jax_evaluation_checks", str(tmp_path), env, arguments=[voc_root]
    )
    for name in ("multi-scale + flip", "sliding window"):
        assert f"{name}: 2 devices equal one device" in report, report
    assert "eval_voc.py --strategy mirrored (single scale) on 2 devices equals one device" in (
        report
    ), report
