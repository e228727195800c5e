"""Quantization-aware training: a trained segmenter fine-tuned as its int8 file computes.

`quantization_aware_model(model)` folds every BatchNorm into its convolution
and fake-quantizes as LiteRT's int8 spec does (kernels per output channel,
symmetric; activations per tensor, asymmetric, ranges learnt by moving
average; the EMA unit's softmax and L2-normalisation at their kernels' fixed
ranges), `fine_tune` trains it a few hundred steps with straight-through
gradients, and `ema_keras.export.export_tflite(qat_model, ...,
quantization="int8")` writes the full-integer file with the ranges it learnt.
See docs/mobile.md.
"""

from ema_keras.quantization.activation_quantizer import ActivationQuantizer, fake_quantize
from ema_keras.quantization.fine_tuning import (
    QuantizationAwareStage,
    compile_for_fine_tuning,
    fine_tune,
)
from ema_keras.quantization.qat_model import (
    activation_quantizers,
    is_quantization_aware,
    quantization_aware_model,
)
from ema_keras.quantization.quantized_conv import (
    QuantizedConv2D,
    QuantizedDepthwiseConv2D,
    quantize_kernel_per_channel,
)
from ema_keras.quantization.quantized_ema_unit import QuantizedEMAUnit
from ema_keras.quantization.quantized_hard_sigmoid import QuantizedHardSigmoid

__all__ = [
    "ActivationQuantizer",
    "QuantizationAwareStage",
    "QuantizedConv2D",
    "QuantizedDepthwiseConv2D",
    "QuantizedEMAUnit",
    "QuantizedHardSigmoid",
    "activation_quantizers",
    "compile_for_fine_tuning",
    "fake_quantize",
    "fine_tune",
    "is_quantization_aware",
    "quantization_aware_model",
    "quantize_kernel_per_channel",
]
