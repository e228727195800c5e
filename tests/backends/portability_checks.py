"""One `.keras` file, any backend: each backend writes its files and reads the others'.

    KERAS_BACKEND=jax python -m tests.backends.portability_checks WORK_DIR

Run once per backend (`test_portability.py` runs TensorFlow in its own
process and JAX and PyTorch as programs, since Keras picks its backend once per
process). WORK_DIR holds `inputs.npy`, raw pixels (B, H, W, 3). Each run

- reads every `<backend>_<model>.keras` another backend wrote and has not yet
  been read here, after nothing but `import ema_keras` (the EMANet files are
  compiled as the trainer compiles: our optimizer, schedule, loss and metric;
  it says whether TensorFlow got imported): it writes the weights it loaded, in order
  (`<source>_<model>_weights_on_<backend>.npz`), and its outputs on the inputs
  (`<source>_<model>_on_<backend>.npy`), and reads the same model's preset
  folder with `EMANetImageSegmenter.from_preset` (`..._preset_on_<backend>.npy`);
- writes its own files once: `<backend>_<model>.keras` after a little
  training, so that the EMA bases and BatchNorm statistics are not their
  initial values (EMANet: two `fit` steps compiled by the trainer's
  `compile_model`; the mobile model: one `fit` step after `compile()` with its
  defaults), its preset folder (`<backend>_<model>_preset/`, `save_to_preset`), its
  weights (`..._weights.npz`) and outputs (`....npy`).

The comparisons are the test's; this program prints one line per file.
"""

import glob
import os
import sys

import keras
import numpy as np

import ema_keras  # noqa: F401  (registers the custom classes before loading)
from ema_keras.models import EMANetBackbone, EMANetImageSegmenter, MobileEMANetBackbone

MODELS = ("emanet", "mobile")
NUM_CLASSES = 3


def build(name):
    if name == "emanet":
        return EMANetImageSegmenter.from_preset(
            "emanet_tiny_demo", num_classes=NUM_CLASSES, seed=1
        )
    return EMANetImageSegmenter.from_preset(
        "emanet_mobilenetv3_small_voc", num_classes=NUM_CLASSES, seed=2
    )


def moving_state(model):
    """The EMA bases and BatchNorm statistics: the state training moves outside the gradients."""
    return {
        variable.path: keras.ops.convert_to_numpy(variable).copy()
        for variable in model.non_trainable_weights
        if variable.path.endswith(("bases", "moving_mean", "moving_variance"))
    }


def labels_for(inputs):
    """Labels that depend on the image (its brightest channel), so training has a signal."""
    return np.argmax(inputs, axis=-1).astype("int32") % NUM_CLASSES


def train_a_little(name, model, inputs):
    if name == "emanet":
        # Compiled as the trainer compiles (our optimizer, schedule, loss and metric), so
        # the file names those classes too: each must load after a bare `import ema_keras`.
        from ema_keras.training.compiling import compile_model
        from ema_keras.training.config import get_recipe

        config = get_recipe("demo", num_classes=NUM_CLASSES, steps=10, learning_rate=1e-3)
        compile_model(model, config, jit_compile="auto")
        model.fit(inputs, labels_for(inputs), batch_size=len(inputs), epochs=2, verbose=0)
    else:
        # Compiled with the segmenter's own defaults (`compile()`: the official SGD, loss
        # and mIoU), which must compile back from the file on every backend too.
        model.compile(decay_steps=10)
        model.fit(inputs, labels_for(inputs), batch_size=len(inputs), epochs=1, verbose=0)


def predict(model, inputs):
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def save_weights(path, model):
    np.savez(path, *model.get_weights())


def make_own_files(work_dir, backend, inputs):
    for name in MODELS:
        stem = os.path.join(work_dir, f"{backend}_{name}")
        if os.path.exists(f"{stem}.keras"):
            continue
        model = build(name)
        before = moving_state(model)
        train_a_little(name, model, inputs)
        after = moving_state(model)
        assert any(path.endswith("bases") for path in after), sorted(after)
        unmoved = [path for path in after if np.array_equal(after[path], before[path])]
        assert not unmoved, f"training left these at their initial values: {unmoved}"
        model.save(f"{stem}.keras")
        model.save_to_preset(f"{stem}_preset")  # the same model, shared as a preset folder
        save_weights(f"{stem}_weights.npz", model)
        np.save(f"{stem}.npy", predict(model, inputs))
        print(f"{backend} wrote {name}: {len(after)} bases and BatchNorm statistics trained")


def read_other_files(work_dir, backend, inputs):
    for path in sorted(glob.glob(os.path.join(work_dir, "*.keras"))):
        source, name = os.path.basename(path)[: -len(".keras")].split("_")
        stem = os.path.join(work_dir, f"{source}_{name}")
        if source == backend or os.path.exists(f"{stem}_on_{backend}.npy"):
            continue
        model = keras.models.load_model(path)
        expected_backbone = EMANetBackbone if name == "emanet" else MobileEMANetBackbone
        assert type(model) is EMANetImageSegmenter, type(model)
        assert type(model.backbone) is expected_backbone, type(model.backbone)
        compiled = getattr(model, "optimizer", None)
        optimizer = type(compiled).__name__ if compiled else "not compiled"
        save_weights(f"{stem}_weights_on_{backend}.npz", model)
        np.save(f"{stem}_on_{backend}.npy", predict(model, inputs))
        # Nothing here imports TensorFlow before this point on JAX and torch: reading a
        # file must not need it (a GPU machine may have none).
        tensorflow = "imported" if "tensorflow" in sys.modules else "not imported"
        print(f"{backend} read {source}'s {name} ({optimizer}; TensorFlow {tensorflow})")
        preset = EMANetImageSegmenter.from_preset(f"{stem}_preset")
        assert type(preset.backbone) is expected_backbone, type(preset.backbone)
        np.save(f"{stem}_preset_on_{backend}.npy", predict(preset, inputs))


def main(work_dir):
    backend = keras.backend.backend()
    inputs = np.load(os.path.join(work_dir, "inputs.npy"))
    read_other_files(work_dir, backend, inputs)
    make_own_files(work_dir, backend, inputs)


if __name__ == "__main__":
    main(sys.argv[1])
