"""BatchNormalization folded into the convolution before it, for inference.

At inference a BatchNormalization is a per-channel affine map,
y = (x - mean) / sqrt(var + eps) * gamma + beta, so after a convolution it can
be absorbed into that convolution's kernel and bias:

    scale = gamma / sqrt(var + eps)
    kernel' = kernel * scale          (per output channel)
    bias'   = (bias - mean) * scale + beta

The folded model skips two elementwise passes over every feature map (the
BatchNorm's multiply and add; at 65x65x2048 that is 35 MB read and written
each) and leaves Conv2D + BiasAdd (+ ReLU), which TensorFlow's graph
optimiser fuses into one kernel.

`fold_batch_norm` rebuilds the model as one flat functional model: nested
models (the backbone) are inlined, every layer is a fresh copy with the same
name, config and weights, and each BatchNorm that follows a Conv2D or
DepthwiseConv2D whose output nothing else reads becomes part of that
convolution. Every other layer is kept as it is (an input normalisation
layer, the EMA unit with its own BatchNorm inside, the resize), so the
folded model takes the same inputs and returns the same outputs, and saves
and loads as a plain `.keras` functional model. It is an inference model:
its BatchNorms no longer exist to train.
"""

import keras
import numpy as np

_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def fold_batch_norm(model, *, dtype=None):
    """A flat inference copy of `model` with each conv + BatchNorm pair folded into one conv.

    Args:
        model: a functional `keras.Model` (an EMANet, a MobileEMANet, or any
            functional model, nested models included).
        dtype: dtype policy for the copied layers (e.g. "mixed_bfloat16");
            None keeps each layer's own. The layers that produce the model's
            outputs keep theirs: the logits stay float32.

    Returns:
        A `keras.Model` (functional) with the same inputs, outputs and layer
        names as `model`, minus the folded BatchNorms.
    """
    # Keras 3.15 internal (no public route; tests/test_keras_internals.py):
    # the functional graph's nodes and its walk with replaced layers (_run_through_graph).
    if not hasattr(model, "_nodes_by_depth"):
        raise TypeError(
            f"fold_batch_norm needs a functional keras.Model, got {type(model).__name__}."
        )
    folds = {}  # id(BatchNorm) -> its conv, and id(conv) -> its BatchNorm
    _find_folds(model, folds)
    keep_dtype = {id(t._keras_history.operation) for t in keras.tree.flatten(model.outputs)}
    inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name)
        for t in model.inputs
    ]

    copies = {}  # id(layer) -> its copy: a layer called twice is copied once

    def copy_of(operation):
        if id(operation) not in copies:
            copies[id(operation)] = _copy(operation)
        return copies[id(operation)]

    def _copy(operation):
        if isinstance(operation, keras.Model) and hasattr(operation, "_nodes_by_depth"):
            return _inlined(operation, copy_of)
        if folds.get(id(operation)) is not None and isinstance(operation, _BATCH_NORM):
            return _identity
        policy = None if id(operation) in keep_dtype else dtype
        if id(operation) in folds:
            return _folded_conv(operation, folds[id(operation)], policy)
        return _copied_layer(operation, policy)

    outputs = model._run_through_graph(inputs, operation_fn=copy_of)
    if len(inputs) == 1:
        inputs = inputs[0]
    return keras.Model(inputs, outputs, name=model.name)


_BATCH_NORM = keras.layers.BatchNormalization


def _identity(x, **unused_kwargs):
    # A folded BatchNorm: its node may carry `mask=None` or `training`.
    return x


def _inlined(submodel, copy_of):
    """A callable that runs a nested functional model's layers in the outer graph."""

    def run(*args, **kwargs):
        return submodel._run_through_graph(args, operation_fn=copy_of)

    return run


def _find_folds(model, folds):
    """Records each (conv, BatchNorm) pair of `model` and its nested models that can fold."""
    readers = {}  # id(tensor) -> how many nodes read it
    outputs = {id(t) for t in keras.tree.flatten(model.outputs)}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            for tensor in node.input_tensors:
                readers[id(tensor)] = readers.get(id(tensor), 0) + 1
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth"):
            _find_folds(layer, folds)
            continue
        if not isinstance(layer, _BATCH_NORM) or len(layer._inbound_nodes) != 1:
            continue
        (source,) = layer._inbound_nodes[0].input_tensors
        conv = source._keras_history.operation
        if (
            isinstance(conv, _CONVOLUTIONS)
            and len(conv._inbound_nodes) == 1
            and readers.get(id(source)) == 1
            and id(source) not in outputs
            and conv.data_format == "channels_last"
            and conv.activation is keras.activations.linear
            and layer.axis in (-1, len(source.shape) - 1)
        ):
            folds[id(layer)] = conv
            folds[id(conv)] = layer


def _copied_layer(layer, dtype):
    """A fresh layer with `layer`'s config (dtype replaced if given); weights copied once built."""
    config = layer.get_config()
    if dtype is not None and "dtype" in config:
        config["dtype"] = dtype
    copy = type(layer).from_config(config)
    weights = layer.get_weights()

    def apply(*args, **kwargs):
        outputs = copy(*args, **kwargs)
        copy.set_weights(weights)
        return outputs

    return apply


def folded_weights(conv, batch_norm):
    """(kernel, bias) of `conv` followed by `batch_norm` (inference statistics), float32."""
    kernel = np.asarray(keras.ops.convert_to_numpy(conv.kernel), np.float64)
    channels = batch_norm.moving_mean.shape[0]
    bias = (
        np.asarray(keras.ops.convert_to_numpy(conv.bias), np.float64)
        if conv.use_bias
        else np.zeros(channels)
    )
    mean = np.asarray(keras.ops.convert_to_numpy(batch_norm.moving_mean), np.float64)
    variance = np.asarray(keras.ops.convert_to_numpy(batch_norm.moving_variance), np.float64)
    scale = 1.0 / np.sqrt(variance + batch_norm.epsilon)
    if batch_norm.scale:
        scale = scale * np.asarray(keras.ops.convert_to_numpy(batch_norm.gamma), np.float64)
    shift = -mean * scale
    if batch_norm.center:
        shift = shift + np.asarray(keras.ops.convert_to_numpy(batch_norm.beta), np.float64)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        # (kh, kw, in, multiplier): output channel c * multiplier + m.
        kernel = kernel * scale.reshape(kernel.shape[2:])
    else:
        kernel = kernel * scale  # (kh, kw, in, out): the last axis is the output channel
    return kernel.astype(np.float32), (bias * scale + shift).astype(np.float32)


def _folded_conv(conv, batch_norm, dtype):
    """A copy of `conv` with a bias, carrying `batch_norm` in its weights."""
    config = conv.get_config()
    config["use_bias"] = True
    config["name"] = conv.name
    if dtype is not None:
        config["dtype"] = dtype
    copy = type(conv).from_config(config)
    kernel, bias = folded_weights(conv, batch_norm)

    def apply(*args, **kwargs):
        outputs = copy(*args, **kwargs)
        copy.kernel.assign(kernel)
        copy.bias.assign(bias)
        return outputs

    return apply
