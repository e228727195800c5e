"""Training in separate processes: resume after SIGKILL, and two workers."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.tf_log_level import TESTS_TF_LOG_LEVEL

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = os.path.join(REPO, "recipes", "train_voc.py")


def _environment():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL)
    env.pop("TF_CONFIG", None)
    return env


def _train_command(data_dir, model_dir, steps, steps_per_checkpoint):
    return [
        sys.executable, TRAIN_SCRIPT, "--recipe=demo", f"--data_dir={data_dir}",
        f"--model_dir={model_dir}", "--strategy=one_device", "--crop_size=64",
        "--global_batch_size=4", f"--steps={steps}",
        f"--steps_per_checkpoint={steps_per_checkpoint}", "--warmup_steps=0",
        "--novalidate", "--verbose=2",
    ]


def _checkpointed_step(checkpoint_dir):
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    return int(latest.rsplit("-", 1)[1]) if latest else 0


@pytest.mark.slow
def test_sigkilled_run_resumes_from_its_checkpoint(small_demo_voc, tmp_path):
    model_dir = str(tmp_path / "run")
    checkpoint_dir = os.path.join(model_dir, "checkpoints")
    command = _train_command(small_demo_voc, model_dir, steps=40, steps_per_checkpoint=5)

    first = subprocess.Popen(command, env=_environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _checkpointed_step(checkpoint_dir) < 10 and time.time() < deadline:
        assert first.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = _checkpointed_step(checkpoint_dir)
    assert 10 <= killed_at < 40

    second = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    output = second.stdout + second.stderr
    resumed_from = int(re.search(r"Resuming from step (\d+)", output).group(1))
    assert resumed_from >= killed_at
    first_epoch = int(re.search(r"Epoch (\d+)/8", output).group(1))
    assert first_epoch == resumed_from // 5 + 1  # continues, does not restart at epoch 1
    assert "Trained to step 40" in output

    # Every checkpoint the index lists is complete, and the last holds step 40
    # with the poly schedule's position carried along.
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    for path in state.all_model_checkpoint_paths:
        tf.train.load_checkpoint(path)
    reader = tf.train.load_checkpoint(state.model_checkpoint_path)
    iterations = [k for k in reader.get_variable_to_shape_map() if "iteration" in k]
    assert iterations and int(reader.get_tensor(iterations[0])) == 40


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_end_with_identical_weights_and_bases(small_demo_voc, tmp_path):
    ports = ",".join(str(p) for p in _free_ports(2))
    entry = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multi_worker_entry.py")
    model_dir = str(tmp_path / "run")
    outputs = [str(tmp_path / f"worker_{i}.npz") for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, entry, str(i), ports, small_demo_voc, model_dir, outputs[i]],
            env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    logs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-3000:]

    chief, other = (np.load(path) for path in outputs)
    assert int(chief["step"]) == int(other["step"]) == 2
    assert set(chief.files) == set(other.files)
    # Model weights (kernels, biases, BN statistics, EMA bases) and optimizer
    # state (momentum buffers, iterations) alike.
    assert [name for name in chief.files if name.endswith("bases")]
    assert [name for name in chief.files if name.endswith("_momentum")]
    assert [name for name in chief.files if "moving_mean" in name]
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    # The chief wrote the checkpoint; the other worker's scratch copy is gone.
    assert _checkpointed_step(os.path.join(model_dir, "checkpoints")) == 2
    assert not os.path.exists(os.path.join(model_dir, "checkpoints", "scratch_1"))
