"""A quantization-aware copy of a trained segmenter: what its int8 TFLite file computes.

`quantization_aware_model(model)` starts from `fold_batch_norm(model)` (one
flat functional model, nested backbones inlined, each conv + BatchNorm pair
one conv) and rebuilds it with

- every Conv2D / DepthwiseConv2D as its quantized twin (kernel fake-quantized
  per output channel, symmetric: `quantized_conv`),
- the EMA unit as `QuantizedEMAUnit` (its BatchNorm folded with the same
  `folded_weights`, every int8 tensor inside it rounded as LiteRT does),
- the hard sigmoid as `QuantizedHardSigmoid` (the file's two ops, the tensor
  between them rounded too),
- an `ActivationQuantizer` on every tensor that the int8 file stores with a
  scale of its own, placed where LiteRT's kernels requantize: after each layer,
  except where the file keeps the input's scale (bilinear resize, dropout,
  reshape, pooling by max), where a ReLU is fused into the conv or add before it
  (the tensor between them does not exist in the file), and on the raw pixels
  (their uint8 scale is fixed: 1, zero point 0). The model's outputs are
  quantized too (a segmenter's logits come from a resize, which keeps the
  scale of the classifier sum before it).

The copy is float32, trains with `fit` (straight-through gradients, ranges by
moving average), and saves and loads as a plain `.keras` functional model.
"""

import keras

from ema_keras.inference.folding import fold_batch_norm, folded_weights
from ema_keras.layers.em_attention import EMAUnit
from ema_keras.layers.resize import BilinearResize
from ema_keras.quantization.activation_quantizer import ActivationQuantizer
from ema_keras.quantization.quantized_conv import quantized_convolution
from ema_keras.quantization.quantized_ema_unit import QuantizedEMAUnit
from ema_keras.quantization.quantized_hard_sigmoid import QuantizedHardSigmoid

# Layers whose int8 output keeps their input's scale and zero point in LiteRT.
SCALE_PRESERVING = (
    BilinearResize,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.MaxPooling2D,
    keras.layers.InputLayer,
)
# Layers into which LiteRT fuses a ReLU that follows them.
RELU_FUSING = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Add)


def _is_activation(layer, name):
    return isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == name


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return not config.get("negative_slope") and config.get("max_value") is None
    return _is_activation(layer, "relu")


def _quantized_ema_unit(unit, range_momentum, quantize_attention):
    return QuantizedEMAUnit(
        num_bases=unit.num_bases,
        num_iterations=unit.num_iterations,
        epsilon=unit.epsilon,
        range_momentum=range_momentum,
        quantize_attention=quantize_attention,
        name=unit.name,
    )


def _copy_weights(quantized, original):
    if isinstance(quantized, QuantizedHardSigmoid):
        return
    if isinstance(quantized, QuantizedEMAUnit):
        kernel, bias = folded_weights(original.output_conv, original.output_norm)
        quantized.input_kernel.assign(original.input_kernel)
        quantized.input_bias.assign(original.input_bias)
        quantized.bases.assign(original.em_attention.bases)
        quantized.output_kernel.assign(kernel)
        quantized.output_bias.assign(bias)
    else:
        quantized.set_weights(original.get_weights())


def quantization_aware_model(model, *, range_momentum=0.99, quantize_attention=True):
    """A float32, quantization-aware functional copy of a trained `model` (BatchNorm folded).

    Args:
        model: a trained functional segmenter (EMANet, MobileEMANet, or any
            functional model; nested models are inlined). It is not changed.
        range_momentum: moving-average momentum of the activation ranges.
        quantize_attention: False keeps the EM iterations in float (a
            measurement: the int8 file quantizes them whatever this says).

    Returns:
        A `keras.Model` with the same inputs and outputs as `model`. Its
        activation ranges are learnt on its first training batches (see
        `fine_tune`); until then each call quantizes with its own batch's range.
    """
    folded = fold_batch_norm(model, dtype="float32")
    originals = {}  # id(new layer) -> the folded layer whose weights it takes
    producers = {}  # id(KerasTensor) -> the layer that produced it
    quantized_tensors = {}  # id(KerasTensor) -> its quantized version (one quantizer each)

    def clone_function(layer):
        if isinstance(layer, EMAUnit):
            new = _quantized_ema_unit(layer, range_momentum, quantize_attention)
        elif _is_activation(layer, "hard_sigmoid"):
            new = QuantizedHardSigmoid(range_momentum, name=layer.name)
        else:
            new = quantized_convolution(layer)
        if new is None:
            return layer  # the folded copy is ours: its other layers are reused as they are
        originals[id(new)] = layer
        return new

    def quantized_input(tensor, consumer):
        producer = producers.get(id(tensor))
        if producer is None or isinstance(producer, SCALE_PRESERVING):
            return tensor
        if _is_relu(consumer) and isinstance(producer, RELU_FUSING):
            return tensor
        if id(tensor) not in quantized_tensors:
            quantizer = ActivationQuantizer(range_momentum, name=f"{producer.name}_quantizer")
            quantized_tensors[id(tensor)] = quantizer(tensor)
        return quantized_tensors[id(tensor)]

    def call_function(layer, *args, **kwargs):
        def quantize(value):
            if isinstance(value, keras.KerasTensor):
                return quantized_input(value, layer)
            return value

        args, kwargs = keras.tree.map_structure(quantize, (args, kwargs))
        outputs = layer(*args, **kwargs)
        for tensor in keras.tree.flatten(outputs):
            producers[id(tensor)] = layer
        return outputs

    qat = keras.models.clone_model(
        folded, clone_function=clone_function, call_function=call_function
    )
    for layer in qat.layers:
        if id(layer) in originals:
            _copy_weights(layer, originals[id(layer)])
    # The outputs too are int8 tensors of the file, unless they keep their input's scale.
    outputs = keras.tree.map_structure(lambda t: quantized_input(t, None), qat.output)
    return keras.Model(qat.input, outputs, name=f"{model.name}_qat")


def activation_quantizers(model):
    """Every `ActivationQuantizer` of `model`, nested ones (the EMA unit's) included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, ActivationQuantizer):
            found.append(layer)
        elif isinstance(layer, (QuantizedEMAUnit, QuantizedHardSigmoid)):
            found.extend(layer.quantizers)
        elif isinstance(layer, keras.Model):
            found.extend(activation_quantizers(layer))
    return found


def is_quantization_aware(model):
    """True if `model` holds fake-quantizing layers (a `quantization_aware_model` copy)."""
    return bool(activation_quantizers(model))
