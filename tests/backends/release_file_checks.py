"""Files written by an earlier release, kept as test data: they must load and predict the same.

    python -m tests.backends.release_file_checks WORK_DIR            (any KERAS_BACKEND)
    python -m tests.backends.release_file_checks --write FOLDER      (once per release)

`write` is how the files under tests/data/release_<version>/ were made (on
TensorFlow, by the release the folder names): a tiny EMANet with the
auxiliary head and the concatenated input, compiled as the trainer compiles
(`compile_model`, the demo recipe) and trained two `fit` steps, so that the
file names our optimizer, schedule, losses and metric, and its EMA bases
and BatchNorm statistics are off their initial values; and a MobileEMANet
(Small) after one training-mode call, uncompiled. `expected.npz` holds the
inputs and each model's outputs on them, in inference mode, as that release
computed them.

`read` loads each file after nothing but `import ema_keras` and writes its
outputs to WORK_DIR (`<name>_on_<backend>.npz`) with a line per file; the test compares.
Files are never rewritten by the tests: a model change that alters what an
old file loads into fails there, and needs a conversion, not new test data.
"""

import os
import sys

import keras
import numpy as np

import ema_keras  # noqa: F401  (registers the custom classes before loading)

RELEASE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "release_0.1.0")
MODELS = ("emanet_aux", "mobile")
NUM_CLASSES = 3


def outputs_of(model, inputs):
    outputs = model(inputs, training=False)
    if not isinstance(outputs, dict):
        outputs = {"logits": outputs}
    return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}


def write(folder):
    from ema_keras.models import EMANetImageSegmenter
    from ema_keras.training.compiling import compile_model
    from ema_keras.training.config import get_recipe

    os.makedirs(folder)
    rng = np.random.default_rng(2026)
    inputs = rng.uniform(0.0, 255.0, (2, 48, 56, 3)).astype("float32")
    labels = (np.argmax(inputs, axis=-1) % NUM_CLASSES).astype("int32")
    emanet = EMANetImageSegmenter.from_preset(
        "emanet_tiny_demo", num_classes=NUM_CLASSES, aux_head=True, concat_input=True, seed=3,
        class_names=["background", "disc", "bar"], palette=[[0, 0, 0], [200, 0, 0], [0, 0, 200]],
    )  # fmt: skip
    compile_model(emanet, get_recipe("demo", num_classes=NUM_CLASSES, steps=10), jit_compile=False)
    emanet.fit(inputs, {"logits": labels, "aux_logits": labels}, batch_size=2, epochs=2,
               verbose=0)
    mobile = EMANetImageSegmenter.from_preset(
        "emanet_mobilenetv3_small_voc", num_classes=NUM_CLASSES, seed=4
    )
    mobile(inputs, training=True)
    expected = {"inputs": inputs}
    for name, model in (("emanet_aux", emanet), ("mobile", mobile)):
        model.save(os.path.join(folder, f"{name}.keras"))
        for output, value in outputs_of(model, inputs).items():
            expected[f"{name}/{output}"] = value
    np.savez(os.path.join(folder, "expected.npz"), **expected)
    print(f"wrote {sorted(os.listdir(folder))} with ema_keras {ema_keras.__version__}")


def read(work_dir):
    with np.load(os.path.join(RELEASE_DIR, "expected.npz")) as expected:
        inputs = expected["inputs"]
    backend = keras.backend.backend()
    for name in MODELS:
        model = keras.models.load_model(os.path.join(RELEASE_DIR, f"{name}.keras"))
        optimizer = getattr(model, "optimizer", None)
        summary = {
            "class": type(model).__name__,
            "optimizer": type(optimizer).__name__ if optimizer else "",
            "iterations": int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer else 0,
            "class_names": ",".join(model.class_names or []),
        }
        outputs = outputs_of(model, inputs)
        np.savez(os.path.join(work_dir, f"{name}_on_{backend}.npz"), **outputs)
        print(f"{backend} read {name}: " + " ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    if sys.argv[1] == "--write":
        write(sys.argv[2])
    else:
        read(sys.argv[1])
