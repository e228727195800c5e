"""The layers' TensorFlow-only paths, taken only on the TensorFlow backend.

Everything else in `ema_keras.layers` is `keras.ops`. These few functions
exist because, on TensorFlow, they earn their place:

- `l2_normalize` and `resize_bilinear` lower to TFLite's builtin
  L2_NORMALIZATION and RESIZE_BILINEAR (the int8 L2 kernel accepts a zero
  vector; a composite of ops would not), which the TFLite export relies on;
- `mean_over_replicas`, `sum_over_replicas` and `replicas_in_sync` reach the
  tf.distribute replica context, where each replica holds only its own slice
  of the batch. On JAX, under `keras.distribution.DataParallel`, arrays are
  global, so a plain `keras.ops` mean over the batch already is the
  global-batch mean and nothing here is needed;
- `batch_norm_inference` is BatchNormalization with fixed statistics as one
  FusedBatchNormV3 op, which TensorFlow's graph optimiser fuses into the
  Conv2D before it (and the ReLU after), where Keras' elementwise form costs
  passes over the whole map (see `ema_keras.layers.batch_norm`);
- `dilated_conv2d` runs a dilated convolution as one Conv2D op with
  `dilations`, TensorFlow's own dilated kernel, where Keras' `tf.nn.convolution`
  would trace SpaceToBatchND + Conv2D + BatchToSpaceND (see
  `ema_keras.layers.dilated_conv`).

`ENABLED` says whether these may be called; TensorFlow is imported only then.
"""

import functools

import keras

ENABLED = keras.backend.backend() == "tensorflow"

if ENABLED:
    import tensorflow as tf


def l2_normalize(tensor, axis, epsilon):
    """`tensor * rsqrt(max(sum(tensor**2, axis), epsilon))`: TFLite's L2_NORMALIZATION."""
    return tf.math.l2_normalize(tensor, axis=axis, epsilon=epsilon)


def resize_bilinear(images, size, align_corners):
    """TF's ResizeBilinear (TFLite's RESIZE_BILINEAR), float32 out.

    `align_corners=False` means half-pixel centres (PyTorch's `align_corners=False`).
    """
    return tf.raw_ops.ResizeBilinear(
        images=images,
        size=size,
        align_corners=align_corners,
        half_pixel_centers=not align_corners,
    )


def batch_norm_inference(inputs, mean, variance, scale, offset, epsilon):
    """NHWC `inputs` normalised with fixed statistics (float32), in `inputs`' dtype: one op.

    FusedBatchNormV3 with `is_training=False`: (x - mean) * rsqrt(variance +
    epsilon) * scale + offset, computed in float32 also for bfloat16 and
    float16 inputs.
    """
    outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
        inputs, scale, offset, mean=mean, variance=variance, epsilon=epsilon,
        data_format="NHWC", is_training=False,
    )  # fmt: skip
    return outputs


def dilated_conv2d(inputs, kernel, dilation_rate, padding):
    """A stride-1 NHWC 2-D convolution at `dilation_rate`, as one Conv2D op.

    `padding` is Keras' ("same" or "valid"). "same" becomes an explicit Pad
    (TensorFlow's "same" split: the odd pixel after) and a "valid" conv, the
    same numbers: ONNX Runtime refuses a dilated Conv with automatic "same"
    padding, and TensorFlow has no oneDNN gradient for a conv with explicit
    pads inside, while oneDNN fuses Pad + Conv2D (no slower than "SAME").
    TensorFlow's CPU kernels run the dilated op forward with oneDNN and with
    Eigen; its gradient only with oneDNN (`dilated_conv2d_has_gradient`).
    """
    if padding == "same":
        pads = [[0, 0]]
        for size, rate in zip(kernel.shape[:2], dilation_rate):
            total = (size - 1) * rate
            pads.append([total // 2, total - total // 2])
        inputs = tf.pad(inputs, pads + [[0, 0]])
    return tf.nn.conv2d(inputs, kernel, 1, "VALID", dilations=list(dilation_rate))


@functools.cache
def dilated_conv2d_has_gradient():
    """Whether this process's TensorFlow computes the gradient of a dilated Conv2D op.

    Its oneDNN CPU kernels do, its Eigen ones do not ("Current CPU
    implementations do not yet support dilation rates larger than 1"). Which
    kernels run is TensorFlow's choice at import: `TF_ENABLE_ONEDNN_OPTS`, and
    when that is unset the CPU (on by default only where TensorFlow finds
    AVX-512 VNNI/BF16, AVX-VNNI or AMX; off, for example, on an AVX2-only AMD
    EPYC). Asked of TensorFlow itself, once, on a 5x5 input, not guessed from
    flags.
    """
    with tf.init_scope():
        try:
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=[1, 5, 5, 1], filter=tf.ones((3, 3, 1, 1)),
                out_backprop=tf.ones((1, 1, 1, 1)), strides=[1, 1, 1, 1],
                padding="VALID", dilations=[1, 2, 2, 1],
            )  # fmt: skip
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
            return False
    return True


def spatial_size(tensor):
    """The (height, width) of a (B, H, W, C) tensor, as a run-time shape op."""
    return tf.shape(tensor)[1:3]


def replicas_in_sync():
    """Replicas of the enclosing tf.distribute strategy (1 outside any)."""
    if not tf.distribute.has_strategy():
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync


def mean_over_replicas(values):
    """Mean of (B, ...) `values` over the global batch, identical on every replica.

    Outside a strategy (or with one replica) it is the local batch mean. Under
    tf.distribute each replica sums its images and counts them, and an
    all-reduce makes both sums global, so every replica divides the same two
    numbers and gets the same bits, whatever the per-replica batch sizes.
    """
    replica_context = tf.distribute.get_replica_context()
    local_sum = tf.reduce_sum(values, axis=0)
    local_count = tf.cast(tf.shape(values)[0], local_sum.dtype)
    if replica_context is None or replica_context.num_replicas_in_sync == 1:
        return local_sum / local_count
    global_sum, global_count = replica_context.all_reduce(
        tf.distribute.ReduceOp.SUM, [local_sum, local_count]
    )
    return global_sum / global_count


def sum_over_replicas(values):
    """Each tensor of the list `values` summed over all replicas (returned as is outside one).

    Cheap to trace. `ReplicaContext.all_reduce` differentiates through a
    `tf.custom_gradient` that, when traced in a graph, walks every op between
    the all-reduce's outputs and its inputs to find variables. Under
    MirroredStrategy the outputs depend on the other replicas' inputs, so the
    walk covers the other replicas' whole forward graph, and TensorFlow's walk
    is quadratic in the ops it visits: one synchronised BatchNorm per conv of a
    ResNet-101 made the first training step of EMANet wait 17 minutes. Here the
    forward sum all-reduces a value behind `stop_gradient` (where the walk
    stops at once), and the gradient is attached through an identity whose
    backward pass all-reduces the incoming gradient, which is the all-reduce's
    own gradient (the gradient of a sum over replicas is the sum of the
    replicas' gradients). Same values, same gradients, one all-reduce each way.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(values)
    values = list(values)
    totals = context.all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.stop_gradient(value) for value in values]
    )
    return [
        total + _zero_with_gradient_summed_over_replicas(value, context)
        for total, value in zip(totals, values)
    ]


def _zero_with_gradient_summed_over_replicas(value, context):
    """Zeros like `value` whose gradient with respect to `value` is the all-reduced upstream."""

    @tf.custom_gradient
    def identity(tensor):
        def gradient(upstream):
            return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(upstream))

        return tf.identity(tensor), gradient

    tied = identity(value)
    return tied - tf.stop_gradient(tied)


def batch_moments_over_replicas(inputs, axes):
    """Mean and variance of `inputs` over `axes` and every replica, from one all-reduce.

    Keras' synchronised BatchNormalization formula: global sum and sum of
    squares over the global count; variance E[x^2] - E[x]^2, clipped at 0.
    """
    local_sum = tf.reduce_sum(inputs, axis=axes, keepdims=True)
    local_squared_sum = tf.reduce_sum(tf.square(inputs), axis=axes, keepdims=True)
    local_count = tf.reduce_sum(tf.ones_like(inputs), axis=axes, keepdims=True)
    total, squared_total, count = sum_over_replicas([local_sum, local_squared_sum, local_count])
    mean = tf.math.divide_no_nan(total, count)
    variance = tf.maximum(tf.math.divide_no_nan(squared_total, count) - tf.square(mean), 0.0)
    return tf.squeeze(mean, axes), tf.squeeze(variance, axes)
