"""The PyTorch-backend checks, run as a program by `test_torch.py` (the test session is TF).

    KERAS_BACKEND=torch python -m tests.backends.torch_checks WORK_DIR

WORK_DIR holds `inputs.npy` and `tensorflow.keras` (a model saved on
TensorFlow). The program checks the EM layer against the NumPy reference,
builds the tiny preset, trains it a few steps with `fit` (the loss falls, the
EMA bases move), saves and reloads it, and reads the TensorFlow file. It
writes `torch.keras` with its outputs (`torch_outputs.npy`) and the TensorFlow
file's outputs on torch (`tensorflow_outputs_on_torch.npy`), one line per check.
"""

import os
import sys

import keras
import numpy as np

import ema_keras

# Checked first thing: `import ema_keras` on torch must not start TensorFlow.
TENSORFLOW_AT_IMPORT = "tensorflow" in sys.modules
from ema_keras.models import EMANetImageSegmenter  # noqa: E402
from tests.backends.layer_checks import check_em_layer_matches_reference  # noqa: E402
from tests.backends.optimizer_checks import (  # noqa: E402
    check_parameter_groups_follow_the_official_rules,
)


def check_tiny_preset_trains_and_saves(work_dir, inputs):
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3, dropout=0.0, seed=0)
    assert model.predict(inputs, verbose=0).shape == inputs.shape[:3] + (3,)
    # Learnable labels: the class of a pixel is the sign pattern of two channels.
    labels = (inputs[..., 0] > 0).astype("int32") + (inputs[..., 1] > 0).astype("int32")
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    bases = model.backbone.get_layer("ema_unit").em_attention.bases
    before = keras.ops.convert_to_numpy(bases).copy()
    losses = model.fit(inputs, labels, batch_size=len(inputs), epochs=4, verbose=0).history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert np.abs(keras.ops.convert_to_numpy(bases) - before).max() > 0, "bases did not move"
    path = os.path.join(work_dir, "torch.keras")
    model.save(path)
    outputs = model.predict(inputs, verbose=0)
    np.save(os.path.join(work_dir, "torch_outputs.npy"), outputs)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, EMANetImageSegmenter)
    np.testing.assert_allclose(reloaded.predict(inputs, verbose=0), outputs, rtol=0, atol=1e-6)
    print(f"tiny preset fits 4 steps (loss {losses[0]:.4f} -> {losses[-1]:.4f}), saves, reloads")


def check_tensorflow_file(work_dir, inputs):
    model = keras.models.load_model(os.path.join(work_dir, "tensorflow.keras"))
    np.save(
        os.path.join(work_dir, "tensorflow_outputs_on_torch.npy"), model.predict(inputs, verbose=0)
    )
    print("the TensorFlow file loads and predicts")


def main(work_dir):
    assert keras.backend.backend() == "torch" and ema_keras.backend.BACKEND == "torch"
    print("import ema_keras loaded TensorFlow" if TENSORFLOW_AT_IMPORT else
          "import ema_keras leaves TensorFlow alone")
    inputs = np.load(os.path.join(work_dir, "inputs.npy"))
    check_em_layer_matches_reference()
    check_tiny_preset_trains_and_saves(work_dir, inputs)
    check_parameter_groups_follow_the_official_rules()
    check_tensorflow_file(work_dir, inputs)


if __name__ == "__main__":
    main(sys.argv[1])
