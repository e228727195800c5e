"""Evaluation on JAX's two host devices against one, run as a program by
`test_distributed_evaluation.py` (the test session is TensorFlow).

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python -m tests.inference.jax_evaluation_checks WORK_DIR VOC_ROOT

WORK_DIR holds `m.keras` (saved on TensorFlow); VOC_ROOT a VOC2012 folder with a val
split, of which the first 3 images (of different sizes) are scored (`eval_voc.py` reads
them as the split `jax`, which the program writes there). Prints one line per
check that holds. JAX compiles every op for every image size on every device, so the
sizes are few: multi-scale + flip at (0.5, 1.0) (scale 1 is the single-scale run,
which the program runs through `eval_voc.py`) and windows of one size.
"""

import json
import os
import sys

import keras
import numpy as np

import ema_keras  # noqa: F401  (registers the classes the file names)
from ema_keras.data.voc import read_voc_split
from ema_keras.inference.distributed_evaluation import evaluate_on_replicas, jax_replicas
from ema_keras.inference.evaluation import evaluate
from ema_keras.inference.precision import inference_model
from tests.cli_testing import run_program
from tests.inference.test_distributed_evaluation import NUM_CLASSES

NUM_IMAGES = 3
SETTINGS = {
    "multi-scale + flip": {"scales": (0.5, 1.0), "flip": True},
    "sliding window": {"window": 32, "stride": 20},
}


def main(work_dir, voc_root):
    assert keras.backend.backend() == "jax"
    path = os.path.join(work_dir, "m.keras")
    model = inference_model(keras.models.load_model(path), "float32").model
    examples = read_voc_split(voc_root, "val")[:NUM_IMAGES]
    split = os.path.join(voc_root, "ImageSets", "Segmentation", "jax.txt")
    with open(split, "w") as file:
        file.write("".join(f"{example.image_id}\n" for example in examples))
    replicas = jax_replicas()
    assert replicas.num_replicas == 2, replicas.devices
    for name, settings in SETTINGS.items():
        reference = evaluate(model, examples, num_classes=NUM_CLASSES, **settings)
        distributed = evaluate_on_replicas(
            model, examples, replicas, num_classes=NUM_CLASSES, **settings
        )
        np.testing.assert_array_equal(distributed.confusion_matrix, reference.confusion_matrix)
        assert distributed.num_images == reference.num_images == NUM_IMAGES
        assert distributed.to_json() == reference.to_json()
        print(f"{name}: 2 devices equal one device")

    outputs = {}
    for strategy in ("one_device", "mirrored"):
        outputs[strategy] = os.path.join(work_dir, f"jax_{strategy}.json")
        status = run_program(
            "eval_voc.py", f"--model={path}", f"--data_dir={voc_root}", "--split=jax",
            f"--strategy={strategy}", f"--output_json={outputs[strategy]}",
        )
        assert status == 0, strategy
    one_device, mirrored = (json.load(open(outputs[name])) for name in ("one_device", "mirrored"))
    assert mirrored == one_device and mirrored["num_images"] == NUM_IMAGES
    print("eval_voc.py --strategy mirrored (single scale) on 2 devices equals one device")


if __name__ == "__main__":
    main(*sys.argv[1:])
