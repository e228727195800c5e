"""Weights keyed by Keras layer name, and their checked assignment to a model.

Every source this package reads (a converted PyTorch state dict, a
`keras.applications` `.h5`, another `.keras` model) is first brought to one
form, `{layer name: {variable name: array}}`, where the variable name is the
variable's path inside its layer (`kernel`, `moving_mean`,
`em_attention/bases`). Matching by name rather than by position is what lets
a backbone trained at one output stride load into another (only padding
layers, which hold no weights, differ), and lets errors say which weights are
missing or left over.
"""

import keras
import numpy as np

_MAX_LISTED = 12


class WeightsMismatchError(ValueError):
    """A weights file does not fit the model: missing, unexpected or misshapen weights."""


def named_layers(model):
    """`{layer name: layer}` of every layer holding weights, nested models flattened.

    An `EMANet` yields its backbone's layers (`conv1_1_conv`, ...) next to
    its head's (`pre_ema_conv`, `ema_unit`, ...); the names do not collide.
    """
    layers = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers.update(named_layers(layer))
        elif layer.weights:
            if layer.name in layers:
                raise ValueError(f"Two layers named {layer.name!r} in model {model.name!r}.")
            layers[layer.name] = layer
    return layers


def layer_variables(layer):
    """`{variable name inside the layer: variable}`, e.g. `{"kernel": ..., "bias": ...}`."""
    variables = {}
    for variable in layer.weights:
        parts = variable.path.split("/")
        # The path starts with the name scopes the layer was built in; keep
        # what follows the layer's own name.
        relative = parts[parts.index(layer.name) + 1 :] if layer.name in parts else parts[-1:]
        variables["/".join(relative)] = variable
    return variables


def model_weights(model):
    """`{layer name: {variable name: numpy array}}` of a Keras model."""
    return {
        name: {key: np.asarray(value.numpy()) for key, value in layer_variables(layer).items()}
        for name, layer in named_layers(model).items()
    }


def assign_layer_weights(
    model, weights, *, source, ignore_layers=(), allow_extra_layers=False, keep_layers=()
):
    """Copies `weights` into `model`'s layers by name, after checking all of them.

    Nothing is assigned unless every target variable has a source array of
    the right shape, and (unless `allow_extra_layers`) every source array has
    a target. The one tolerated difference: a target convolution bias with no
    source bias (PyTorch convs before a BatchNorm have none) is set to zero,
    which computes the same thing.

    Args:
        model: the Keras model to fill.
        weights: `{layer name: {variable name: array}}`.
        source: the file the weights come from, for error messages.
        ignore_layers: source layers to skip silently (a classifier the
            model does not have).
        allow_extra_layers: skip, rather than report, source layers the
            model does not have (loading a backbone out of a full model).
        keep_layers: model layers left as they are, whatever the file holds
            under their names (classifiers trained anew for another class
            count: their shapes differ, so they are neither checked nor
            assigned).

    Raises:
        WeightsMismatchError: listing every missing, unexpected and
            misshapen weight.
    """
    targets = {
        name: layer for name, layer in named_layers(model).items() if name not in keep_layers
    }
    missing, unexpected, misshapen, assignments = [], [], [], []
    for layer_name, layer in targets.items():
        source_layer = weights.get(layer_name)
        for variable_name, variable in layer_variables(layer).items():
            key = f"{layer_name}/{variable_name}"
            if source_layer is None or variable_name not in source_layer:
                if variable_name == "bias" and source_layer and "kernel" in source_layer:
                    assignments.append((variable, np.zeros(variable.shape, "float32")))
                else:
                    missing.append(key)
                continue
            value = source_layer[variable_name]
            if tuple(value.shape) != tuple(variable.shape):
                misshapen.append(f"{key}: file {tuple(value.shape)}, model {tuple(variable.shape)}")
                continue
            assignments.append((variable, value))
    for layer_name, source_layer in weights.items():
        if layer_name in ignore_layers or layer_name in keep_layers:
            continue
        if layer_name not in targets:
            if not allow_extra_layers:
                unexpected.extend(f"{layer_name}/{name}" for name in source_layer)
            continue
        target_variables = layer_variables(targets[layer_name])
        for variable_name, value in source_layer.items():
            if variable_name in target_variables:
                continue
            if variable_name == "bias" and not np.any(value):
                continue  # an all-zero bias is no bias
            unexpected.append(f"{layer_name}/{variable_name}")
    if missing or unexpected or misshapen:
        raise WeightsMismatchError(
            f"Weights in {source} do not fit model {model.name!r}:"
            + _listing("missing from the file", missing)
            + _listing("in the file but not in the model", unexpected)
            + _listing("with a different shape", misshapen)
        )
    for variable, value in assignments:
        variable.assign(np.asarray(value, dtype=variable.dtype))


def _listing(title, items):
    if not items:
        return ""
    shown = ", ".join(items[:_MAX_LISTED])
    more = f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"\n  {len(items)} {title}: {shown}{more}"
