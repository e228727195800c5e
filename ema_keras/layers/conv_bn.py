"""Convolution + BatchNormalization (+ ReLU), padded the way PyTorch pads.

A plain function, not a layer: it adds ordinary Keras layers to a functional
graph under predictable names (`{name}_pad`, `{name}_conv`, `{name}_bn`,
`{name}_relu`), the scheme `keras.applications` ResNet uses, so weights can be
mapped by name.
"""

import zlib

import keras

from ema_keras.layers import tensorflow_ops
from ema_keras.layers.batch_norm import SyncBatchNormalization
from ema_keras.layers.dilated_conv import DilatedConv2D
from ema_keras.layers.initializers import conv_kernel_initializer


def batch_norm_settings(momentum=0.9, epsilon=1e-5, synchronized=None):
    """BatchNormalization keyword arguments, with `synchronized` resolved.

    `synchronized=None` means "synchronise across replicas when built inside a
    tf.distribute strategy with more than one replica", as every EMANet
    reference trains with synchronised BatchNorm. Off TensorFlow it resolves to
    False (see `SyncBatchNormalization`).
    """
    if synchronized is None:
        synchronized = replicas_in_sync() > 1
    return {
        "momentum": float(momentum),
        "epsilon": float(epsilon),
        "synchronized": bool(synchronized),
    }


def replicas_in_sync():
    """Replicas of the enclosing tf.distribute strategy (1 outside any, and off TensorFlow)."""
    return tensorflow_ops.replicas_in_sync() if tensorflow_ops.ENABLED else 1


def layer_seed(seed, name):
    """A seed of its own for layer `name`, derived from the model's `seed`.

    An integer seed makes Keras initializers stateless: every conv of the
    same shape given the same seed would start from the same kernel.
    """
    if seed is None:
        return None
    return zlib.crc32(f"{seed}/{name}".encode()) % (2**31)


def apply_conv_bn(
    x,
    filters,
    kernel_size,
    *,
    name,
    strides=1,
    dilation_rate=1,
    use_bias=False,
    activation=True,
    batch_norm=None,
    seed=None,
    dtype=None,
):
    """Conv2D, BatchNormalization and optionally ReLU on `x`.

    Strided convolutions are padded explicitly and symmetrically, then run with
    "valid" padding: PyTorch's `padding=k // 2`. Keras' "same" pads
    asymmetrically for stride 2, which would shift every feature map by half a
    pixel against converted PyTorch weights. Stride-1 convolutions use "same",
    which is symmetric there (also when dilated). A dilated convolution is a
    `DilatedConv2D`: a Conv2D whose inference on TensorFlow runs one dilated
    Conv2D op instead of Keras' SpaceToBatchND lowering.

    Args:
        x: (B, H, W, C) symbolic tensor.
        filters, kernel_size, strides, dilation_rate: as in `keras.layers.Conv2D`.
        name: prefix of the layer names.
        use_bias: give the convolution a bias.
        activation: append a ReLU.
        batch_norm: keyword arguments of the BatchNormalization
            (see `batch_norm_settings`).
        seed: model seed; the kernel initializer gets `layer_seed(seed, name)`.
        dtype: dtype policy of the layers.
    """
    batch_norm = batch_norm if batch_norm is not None else batch_norm_settings()
    padding = "same"
    if strides > 1:
        pad = dilation_rate * (kernel_size - 1) // 2
        if pad > 0:
            x = keras.layers.ZeroPadding2D(pad, dtype=dtype, name=f"{name}_pad")(x)
        padding = "valid"
    convolution = DilatedConv2D if dilation_rate > 1 else keras.layers.Conv2D
    x = convolution(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        use_bias=use_bias,
        kernel_initializer=conv_kernel_initializer(layer_seed(seed, name)),
        dtype=dtype,
        name=f"{name}_conv",
    )(x)
    x = SyncBatchNormalization(**batch_norm, dtype=dtype, name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)
    return x
