"""A Conv2D whose dilated inference runs TensorFlow's own dilated kernel.

Keras' TensorFlow backend calls `tf.nn.convolution`, which traces a dilated
convolution as SpaceToBatchND + Conv2D + BatchToSpaceND: the map is cut into
dilation**2 sub-maps, convolved undilated, and stitched back. One Conv2D op
with `dilations` computes the same numbers without the two reshuffles and,
on the AMD EPYC of docs/benchmarks.md at 1 thread, a 3x3 512->512 conv at
65x65 ran 5-10% faster at dilations 2 and 4 and 2x faster at 16 (the last
block of an output-stride-8 ResNet), with oneDNN kernels and with Eigen.

Only inference takes that path. TensorFlow's Eigen CPU kernels have no
gradient for the dilated op, so it is also only taken where TensorFlow
computes that gradient (its oneDNN kernels; asked once,
`tensorflow_ops.dilated_conv2d_has_gradient`): a gradient taken in inference
mode (a saliency map, say) must still exist. TensorFlow turns oneDNN on by
default only on some x86 CPUs, so an AVX2-only AMD EPYC keeps Keras' lowering. Training keeps
Keras' lowering, and every other backend keeps Keras' own convolution.
The weights, the config and every output are those of `keras.layers.Conv2D`.
"""

import keras
from keras import ops

from ema_keras.layers import tensorflow_ops
from ema_keras.serialization import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class DilatedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` (same arguments) with a faster dilated inference on TensorFlow."""

    def call(self, inputs, training=None):
        if training or not self._runs_native_dilation():
            return super().call(inputs)
        outputs = tensorflow_ops.dilated_conv2d(
            inputs, self.kernel, self.dilation_rate, self.padding
        )
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def _runs_native_dilation(self):
        return (
            tensorflow_ops.ENABLED
            and max(self.dilation_rate) > 1
            and max(self.strides) == 1
            and self.groups == 1
            and self.data_format == "channels_last"
            and tensorflow_ops.dilated_conv2d_has_gradient()
        )
