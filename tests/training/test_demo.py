"""The README's main job: the demo recipe learns the generated dataset."""

import os
import subprocess
import sys

import keras
import pytest

from ema_keras.data import voc
from ema_keras.inference.evaluation import evaluate
from ema_keras.training import get_recipe, train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# README: 85.2-86.5% over our runs, each image at its own size (chance is ~10% on its
# 6 classes); the floor leaves about 5 points for another CPU's float summation order.
DEMO_MIOU_FLOOR = 0.80


@pytest.mark.slow
def test_demo_recipe_reaches_the_stated_miou_and_the_clis_read_its_output(tmp_path):
    model_dir = str(tmp_path / "demo")
    result = train(get_recipe("demo", strategy="mirrored", verbose=0), model_dir)
    assert result.step == 300
    model = keras.models.load_model(os.path.join(model_dir, "best.keras"), safe_mode=True)
    voc_root = os.path.join(model_dir, "demo_data", "VOC2012")
    scores = evaluate(model, voc.read_voc_split(voc_root, "val"), num_classes=21)
    assert scores.mean_iou >= DEMO_MIOU_FLOOR, scores.to_markdown()

    env = dict(os.environ, PYTHONPATH=REPO)
    evaluation = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "eval_voc.py"), f"--model_dir={model_dir}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    assert f"mIoU: {100 * scores.mean_iou:.2f}" in evaluation.stdout

    prediction = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "predict.py"),
         f"--model={model_dir}/best.keras", f"--inputs={voc_root}/JPEGImages",
         f"--output_dir={tmp_path}/predictions"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert prediction.returncode == 0, prediction.stderr[-2000:]
    predictions = os.listdir(tmp_path / "predictions")
    assert len([name for name in predictions if name.endswith("_overlay.jpg")]) == 250
