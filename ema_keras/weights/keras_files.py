"""Reading Keras weight files into `{layer name: {variable name: array}}`."""

import os

import numpy as np

# A `.keras` file has one loader, shared with the CLIs and export (see
# `ema_keras.model_files`); the weights loaders reach it through this module.
from ema_keras.model_files import load_keras_model, read_keras_config  # noqa: F401


def read_legacy_h5(path):
    """Weights of a legacy Keras HDF5 file, by layer name.

    Both legacy layouts are read: a weights-only file (what
    `keras.applications` downloads, e.g.
    `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`: one group per
    layer, listed in the `layer_names` attribute) and a whole-model file
    (`model.save("x.h5")`: the same under `model_weights`).
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such weights file: {path}")
    with h5py.File(path, "r") as file:
        group = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in group.attrs:
            raise ValueError(
                f"{path} is not a legacy Keras weights file (no `layer_names` attribute). "
                "A Keras 3 `.weights.h5` file is keyed by layer order, not name: load it with "
                "`model.load_weights` into the architecture that saved it."
            )
        weights = {}
        for layer_name in _strings(group.attrs["layer_names"]):
            layer_group = group[layer_name]
            names = _strings(layer_group.attrs.get("weight_names", []))
            if not names:
                continue
            weights[layer_name] = {
                _variable_name(name, layer_name): np.asarray(layer_group[name]) for name in names
            }
    return weights


def _strings(values):
    return [value.decode("utf8") if isinstance(value, bytes) else str(value) for value in values]


def _variable_name(weight_name, layer_name):
    # "conv1_conv/kernel:0" (TF 2 era files) or "conv1_conv/kernel" (Keras 3).
    name = weight_name.split(":")[0]
    prefix = layer_name + "/"
    return name[len(prefix) :] if name.startswith(prefix) else name.rsplit("/", 1)[-1]
