"""predict.py --engine ray: bulk prediction on a local Ray cluster started here (issue 24).

The cluster (2 CPUs) is shared by the tests; the programs run in subprocesses join it
through RAY_ADDRESS, so that killing one leaves no Ray processes behind.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ema_keras.data.image_io import load_label
from ema_keras.inference import bulk_prediction
from ema_keras.inference.bulk_prediction import (
    REPORT_NAME,
    RayNotInstalledError,
    expand_inputs,
    partial_path,
    plan_bulk_predictions,
    predict_with_ray,
)
from ema_keras.inference.precision import inference_model
from ema_keras.inference.prediction import OutputConflictError, predict_files
from ema_keras.model_files import load_keras_model
from ema_keras.models import EMANetImageSegmenter
from tests.cli_testing import run_program
from tests.tf_log_level import TESTS_TF_LOG_LEVEL

pytestmark = pytest.mark.slow  # a Ray cluster, model replicas in new processes, 3 programs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=NUM_CLASSES, seed=0).save(path)
    return path


def write_images(folder, *names, size=(24, 32), seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        channels = 4 if name.startswith("rgba") else 3
        pixels = rng.integers(0, 256, size=(*size, channels), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, name))


def listing(folder):
    """{path relative to folder: (bytes, mtime_ns)} of every file below `folder`."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, folder)] = (file.read(), os.stat(path).st_mtime_ns)
    return found


def run_predict(*flags, ray_cluster=None, **popen):
    command = [sys.executable, os.path.join(REPO, "recipes", "predict.py"), *flags]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL)
    if ray_cluster is not None:  # join the test's cluster instead of starting one
        env["RAY_ADDRESS"] = ray_cluster.get_runtime_context().gcs_address
    return subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


@pytest.fixture(scope="module")
def first_run(ray_cluster, model_path, tmp_path_factory):
    """Four images (one RGBA, one in a subfolder) and a corrupt one, on two replicas."""
    root = tmp_path_factory.mktemp("bulk")
    images = root / "images"
    write_images(images, "a.png", "b.jpg", "rgba.png")
    write_images(images / "sub", "c.png", seed=1)
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    summary = predict_with_ray(
        model_path, [str(images)], str(root / "ray"), num_workers=2, batch_size=2,
        overlays=True, probabilities=True,
    )
    return root, images, summary


def test_labels_equal_the_single_process_engines(first_run, model_path):
    root, images, _ = first_run
    # The local engine as predict.py runs it: BatchNorm folded, float32.
    model = inference_model(load_keras_model(model_path), "float32").model
    local = predict_files(model, [str(images)], str(root / "local"))
    assert len(local.written) == 4
    for path in local.written:
        relative = os.path.relpath(path, root / "local")
        on_ray = load_label(str(root / "ray" / relative))
        np.testing.assert_array_equal(on_ray, load_label(path), err_msg=relative)
        overlay = relative[: -len(".png")] + "_overlay.jpg"
        assert os.path.isfile(root / "ray" / overlay)
        with np.load(root / "ray" / (relative[: -len(".png")] + "_probabilities.npz")) as saved:
            probabilities = saved["probabilities"]
        assert probabilities.shape == (24, 32, NUM_CLASSES)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-2)
        np.testing.assert_array_equal(np.argmax(probabilities, -1), on_ray)
    assert not [name for name in listing(root / "ray") if name.endswith(".partial")]


def test_a_corrupt_image_is_reported_and_the_others_complete(first_run):
    root, images, summary = first_run
    broken = str(images / "broken.jpg")
    assert (summary.total, summary.done, summary.skipped, summary.failed) == (5, 4, 0, 1)
    assert summary.converted == 1  # rgba.png: alpha dropped
    with open(root / "ray" / REPORT_NAME) as file:
        records = [json.loads(line) for line in file]
    reason = "not an image, or a corrupt one (no .jpg header Pillow recognises)"
    assert records == [{"path": broken, "error": reason}]
    assert summary.failures == {broken: reason}
    assert summary.summary() == (
        f"4 of 5 images predicted, 1 converted on reading, 0 skipped (already complete), "
        f"1 failed (listed in {root / 'ray' / REPORT_NAME})"
    )
    assert not os.path.exists(root / "ray" / "broken.png")


def test_a_killed_run_resumes_skipping_complete_images_and_redoing_partial_ones(
    ray_cluster, model_path, tmp_path
):
    images, out = tmp_path / "images", tmp_path / "out"
    write_images(images, *(f"image{index:02d}.png" for index in range(12)), size=(96, 128))
    flags = [f"--model={model_path}", f"--inputs={images}", f"--output_dir={out}",
             "--engine=ray", "--num_workers=1"]
    program = run_predict(*flags, ray_cluster=ray_cluster, start_new_session=True)
    deadline = time.monotonic() + 240
    while len(label_maps(out)) < 2:  # two images complete: one stays so after the planting
        assert program.poll() is None, program.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no label map written in 240 s"
        time.sleep(0.02)
    os.killpg(program.pid, signal.SIGKILL)  # its own session: the driver and anything it started
    program.communicate()
    while ray_cluster.available_resources().get("CPU", 0) < 2:  # its replica gone too
        assert time.monotonic() < deadline, "the killed job's replica still holds its CPU"
        time.sleep(0.2)

    plan = plan_bulk_predictions([str(images)], str(out), overlays=True)
    complete = [item for item in plan if item.is_complete()]
    assert complete, "the label map is written last: its image was complete"
    # Partial in the two ways a kill leaves an image: a companion missing, a temporary file.
    os.remove(complete[0].overlay_path)
    incomplete = [item for item in plan if not item.is_complete()]
    with open(partial_path((incomplete or complete)[-1].label_path), "wb") as file:
        file.write(b"half a png")
    complete = [item for item in plan if item.is_complete()]
    kept = {item.image_path: listing_of(item) for item in complete}

    program = run_predict(*flags, ray_cluster=ray_cluster)
    stdout, stderr = program.communicate(timeout=300)
    assert program.returncode == 0, stderr[-3000:]
    assert stdout.strip().splitlines()[-1] == (
        f"{12 - len(complete)} of 12 images predicted, {len(complete)} skipped (already complete)"
    )
    assert all(item.is_complete() for item in plan)
    assert {item.image_path: listing_of(item) for item in complete} == kept  # not rewritten
    assert sorted(os.listdir(out)) == sorted(
        [os.path.basename(path) for item in plan for path in item.output_paths] + [REPORT_NAME]
    )  # no temporary file left


def label_maps(folder):
    if not os.path.isdir(folder):
        return []
    return [name for name in os.listdir(folder) if name.endswith(".png") and name[0] != "."]


def listing_of(item):
    return [(open(path, "rb").read(), os.stat(path).st_mtime_ns) for path in item.output_paths]


def test_an_output_folder_holding_inputs_is_refused_before_anything_is_written(
    ray_cluster, model_path, tmp_path
):
    write_images(tmp_path, "cat.jpg", "dog.jpg")
    before = listing(tmp_path)
    program = run_predict(f"--model={model_path}", f"--inputs={tmp_path}",
                          f"--output_dir={tmp_path}", "--engine=ray")
    _, stderr = program.communicate(timeout=300)
    assert program.returncode == 2, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"predict.py: output_dir {tmp_path} holds the input {tmp_path / 'cat.jpg'}: "
        "choose another folder"
    )
    with pytest.raises(OutputConflictError, match="holds the input"):
        predict_with_ray(model_path, [str(tmp_path / "dog.jpg")], str(tmp_path))
    assert listing(tmp_path) == before


def test_globs_and_manifests_name_images(tmp_path):
    write_images(tmp_path / "day1", "a.jpg", "b.png")
    write_images(tmp_path / "day2", "c.jpg")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# two images\nday1/b.png\n\n{tmp_path / 'day2' / 'c.jpg'}\n")
    assert expand_inputs([str(tmp_path / "**" / "*.jpg"), str(manifest)]) == [
        str(tmp_path / "day1" / "a.jpg"), str(tmp_path / "day2" / "c.jpg"),
        str(tmp_path / "day1" / "b.png"), str(tmp_path / "day2" / "c.jpg"),
    ]
    plan = plan_bulk_predictions([str(manifest)], str(tmp_path / "out"), probabilities=True)
    assert [os.path.basename(item.probabilities_path) for item in plan] == [
        "b_probabilities.npz", "c_probabilities.npz"
    ]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.webp")])


def test_without_ray_the_package_imports_and_the_engine_names_the_extra(monkeypatch):
    code = "import sys, ema_keras.inference; print('ray' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO), timeout=300, check=True)
    assert loaded.stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "ray", None)  # what a missing package looks like
    with pytest.raises(RayNotInstalledError, match=r"pip install 'ema-keras\[ray\]'$") as error:
        bulk_prediction.import_ray()
    assert "\n" not in str(error.value)


def test_replicas_one_per_gpu_else_a_share_of_the_cpus_each():
    resources = bulk_prediction._worker_resources
    assert resources({"CPU": 16, "GPU": 8}, None) == (8, None, {"num_gpus": 1.0, "num_cpus": 1})
    assert resources({"CPU": 16, "GPU": 2}, 4) == (4, None, {"num_gpus": 0.5, "num_cpus": 1})
    assert resources({"CPU": 8}, None) == (2, 4, {"num_cpus": 4.0})  # one per 4 CPUs
    assert resources({"CPU": 2}, None) == (1, 2, {"num_cpus": 2.0})
    assert resources({"CPU": 2}, 3) == (3, 1, {"num_cpus": 0.6666})
    with pytest.raises(ValueError, match="num_workers must be >= 1"):
        resources({"CPU": 2}, 0)


def test_the_ray_only_flags_are_refused_with_the_local_engine(tmp_path, capsys):
    for flag in ("--num_workers=2", "--probabilities"):
        status = run_program("predict.py", f"--model={tmp_path / 'm.keras'}",
                             f"--inputs={tmp_path}", f"--output_dir={tmp_path / 'out'}", flag)
        assert status == 2
        name = flag[2:].split("=")[0]
        assert capsys.readouterr().err.strip() == f"predict.py: --{name} is for --engine ray"
    with pytest.raises(TypeError, match="unknown options attention_maps"):
        predict_with_ray(tmp_path / "m.keras", [str(tmp_path)], str(tmp_path / "out"),
                         attention_maps=True)
    assert not os.path.exists(tmp_path / "out")
