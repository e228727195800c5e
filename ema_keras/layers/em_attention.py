"""Expectation-Maximization Attention: the EM layer and the EMA unit around it.

Shapes follow Keras' channels-last convention: a feature map is (B, H, W, C),
flattened to (B, N, C) with N = H * W, and the bases are (C, K).
"""

import math

import keras
from keras import ops

from ema_keras.layers import tensorflow_ops
from ema_keras.layers.batch_norm import SyncBatchNormalization
from ema_keras.layers.initializers import L2NormalizedNormal, conv_kernel_initializer
from ema_keras.serialization import PACKAGE


def _l2_normalize(tensor, axis, epsilon):
    # As the official code: divides by (epsilon + norm).
    norm = ops.sqrt(ops.sum(ops.square(tensor), axis=axis, keepdims=True))
    return tensor / (epsilon + norm)


def _unit_bases(bases, epsilon):
    """(B, K, C) bases scaled to unit L2 norm over C, norms floored at `epsilon`.

    On TensorFlow this is `tf.math.l2_normalize`, TFLite's L2_NORMALIZATION
    (see `expectation_maximization`); elsewhere the same formula in keras.ops.
    """
    if tensorflow_ops.ENABLED:
        return tensorflow_ops.l2_normalize(bases, axis=-1, epsilon=epsilon**2)
    squared_norm = ops.sum(ops.square(bases), axis=-1, keepdims=True)
    return bases * ops.rsqrt(ops.maximum(squared_norm, epsilon**2))


def _global_mean_over_batch(per_image_bases):
    """Mean of (B, ...) over the global batch, identical on every replica or device.

    On TensorFlow, under tf.distribute, each replica holds its own slice of
    the batch and an all-reduce makes the mean global (see
    `tensorflow_ops.mean_over_replicas`). On JAX, under
    `keras.distribution.DataParallel`, the batch is one global (sharded)
    array, so the plain mean is already the global-batch mean.
    """
    if tensorflow_ops.ENABLED:
        return tensorflow_ops.mean_over_replicas(per_image_bases)
    return ops.mean(per_image_bases, axis=0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class EMALayer(keras.layers.Layer):
    """Expectation-Maximization Attention (Li et al., ICCV 2019).

    Estimates `num_bases` bases per image by `num_iterations` EM steps started
    from shared bases `mu`, and reconstructs every pixel as the
    responsibility-weighted sum of them: a low-rank version of the input.

    The EM iterations and the reconstruction carry no gradient (as in the
    official code): the output is a constant with respect to the input, and the
    unit around it learns through its output convolution only.

    The shared bases are a non-trainable weight, `bases`, of shape
    (channels, num_bases), kept by moving average inside `call` when training:
    `bases <- momentum * bases + (1 - momentum) * mean_b(mu_b)`, the mean taken
    over the global batch (every replica), so every replica holds the same
    bases after every step.

    All EM arithmetic runs in float32, whatever the compute dtype; the output
    is cast back to the compute dtype and the bases are always float32.

    Args:
        num_bases: K, the number of bases.
        num_iterations: T, the number of EM iterations.
        momentum: moving-average momentum of the shared bases.
        epsilon: floor of the bases' L2 norms (the official code adds it to the
            responsibilities' sum and to the norms; see `expectation_maximization`).
        normalize_average: L2-normalise the batch-averaged bases before the
            moving-average update (mmsegmentation and PaddleSeg do this; the
            official code does not, so the default is False).
        seed: seed of the bases' initialisation.
    """

    def __init__(
        self,
        num_bases=64,
        num_iterations=3,
        momentum=0.9,
        epsilon=1e-6,
        normalize_average=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_bases) < 1:
            raise ValueError(f"`num_bases` must be >= 1, got {num_bases}.")
        if int(num_iterations) < 1:
            raise ValueError(f"`num_iterations` must be >= 1, got {num_iterations}.")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"`momentum` must be in [0, 1], got {momentum}.")
        if float(epsilon) <= 0.0:
            raise ValueError(f"`epsilon` must be > 0, got {epsilon}.")
        self.num_bases = int(num_bases)
        self.num_iterations = int(num_iterations)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.normalize_average = bool(normalize_average)
        self.seed = seed
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"EMALayer needs a known channel dimension, got input shape {input_shape}."
            )
        self.bases = self.add_weight(
            name="bases",
            shape=(channels, self.num_bases),
            initializer=L2NormalizedNormal(
                stddev=math.sqrt(2.0 / self.num_bases), axis=0, seed=self.seed
            ),
            trainable=False,
            autocast=False,
            dtype="float32",
            # Every replica computes the same all-reduced update, so taking
            # the first replica's value keeps the copies bit-identical.
            aggregation="only_first_replica",
        )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def expectation_maximization(self, inputs):
        """Runs the EM iterations on (B, H, W, C) inputs, in float32.

        Returns `(responsibilities, per_image_bases)`: the last E-step's z,
        shape (B, N, K) (softmax over K), and the last M-step's bases, shape
        (B, K, C), each base L2-normalised over C.

        The M-step of EMANET.md first divides z by its sum over N, one scale
        per base, then L2-normalises each base: the first division cancels in
        the second, so it is left out. Besides saving work, this keeps the
        graph free of a division by a per-base total that rounds to zero in
        full-integer int8 TFLite when a base attracts almost no pixels; and
        on TensorFlow the normalisation is `tf.math.l2_normalize`, which
        becomes TFLite's L2_NORMALIZATION, whose int8 kernel accepts a zero
        vector. In float32 the result differs from the literal formula only
        through the epsilons (about 1e-6 relative).
        """
        x = ops.cast(ops.stop_gradient(inputs), "float32")
        batch = ops.shape(x)[0]
        x = ops.reshape(x, (batch, -1, ops.shape(x)[-1]))  # (B, N, C)
        shared = ops.transpose(ops.convert_to_tensor(self.bases))  # (K, C)
        # Every image starts from the same shared bases.
        bases = ops.broadcast_to(ops.expand_dims(shared, 0), (batch,) + tuple(shared.shape))
        for _ in range(self.num_iterations):
            # E-step: responsibilities of each base for each pixel.
            z = ops.softmax(ops.einsum("bnc,bkc->bnk", x, bases), axis=-1)
            # M-step: bases as responsibility-weighted sums of the pixels, unit length.
            bases = _unit_bases(ops.einsum("bnc,bnk->bkc", x, z), self.epsilon)
        return ops.stop_gradient(z), ops.stop_gradient(bases)

    def call(self, inputs, training=None):
        z, per_image_bases = self.expectation_maximization(inputs)
        reconstruction = ops.einsum("bnk,bkc->bnc", z, per_image_bases)
        reconstruction = ops.reshape(reconstruction, ops.shape(inputs))
        if training and self.trainable:
            self._update_bases(per_image_bases)
        return ops.cast(reconstruction, self.compute_dtype)

    def _update_bases(self, per_image_bases):
        average = ops.transpose(_global_mean_over_batch(per_image_bases))  # (C, K)
        if self.normalize_average:
            average = _l2_normalize(average, axis=0, epsilon=self.epsilon)
        self.bases.assign(self.momentum * self.bases + (1.0 - self.momentum) * average)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_bases": self.num_bases,
                "num_iterations": self.num_iterations,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "normalize_average": self.normalize_average,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class EMAUnit(keras.layers.Layer):
    """The EMA unit: 1x1 conv, EM attention, ReLU, 1x1 conv + BN, residual, ReLU.

    Channels follow the input. The input projection gets no gradient in the
    official code (the EM path is gradient-free), so here its kernel and bias
    are non-trainable weights of the unit itself: optimizers and weight decay
    never see them, and `unit.trainable = True` does not make them trainable.
    They still load from converted checkpoints like any weight.

    Args:
        num_bases, num_iterations, momentum, epsilon, normalize_average: passed
            to `EMALayer`.
        batch_norm_momentum, batch_norm_epsilon, batch_norm_synchronized: the
            output BatchNormalization's settings (Keras momentum convention:
            0.9 is PyTorch's 0.1).
        seed: seed of the initialisers (bases and convolutions).
    """

    def __init__(
        self,
        num_bases=64,
        num_iterations=3,
        momentum=0.9,
        epsilon=1e-6,
        normalize_average=False,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        batch_norm_synchronized=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_bases = int(num_bases)
        self.num_iterations = int(num_iterations)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.normalize_average = bool(normalize_average)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.batch_norm_synchronized = bool(batch_norm_synchronized)
        self.seed = seed
        self.em_attention = EMALayer(
            num_bases=num_bases,
            num_iterations=num_iterations,
            momentum=momentum,
            epsilon=epsilon,
            normalize_average=normalize_average,
            seed=seed,
            dtype=self.dtype_policy,
            name="em_attention",
        )
        self.output_norm = SyncBatchNormalization(
            momentum=batch_norm_momentum,
            epsilon=batch_norm_epsilon,
            synchronized=batch_norm_synchronized,
            dtype=self.dtype_policy,
            name="output_norm",
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"EMAUnit needs a known channel dimension, got {input_shape}.")
        kernel_initializer = conv_kernel_initializer(self.seed)
        self.input_kernel = self.add_weight(
            name="input_kernel",
            shape=(1, 1, channels, channels),
            initializer=kernel_initializer,
            trainable=False,
        )
        self.input_bias = self.add_weight(
            name="input_bias", shape=(channels,), initializer="zeros", trainable=False
        )
        self.em_attention.build(input_shape)
        self.output_conv = keras.layers.Conv2D(
            channels,
            1,
            use_bias=False,
            kernel_initializer=kernel_initializer,
            dtype=self.dtype_policy,
            name="output_conv",
        )
        self.output_conv.build(input_shape)
        self.output_norm.build(input_shape)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def call(self, inputs, training=None):
        x = ops.conv(inputs, self.input_kernel, strides=1, padding="valid") + self.input_bias
        x = self.em_attention(x, training=training)
        x = ops.relu(x)
        x = self.output_conv(x)
        x = self.output_norm(x, training=training)
        return ops.relu(x + inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_bases": self.num_bases,
                "num_iterations": self.num_iterations,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "normalize_average": self.normalize_average,
                "batch_norm_momentum": self.batch_norm_momentum,
                "batch_norm_epsilon": self.batch_norm_epsilon,
                "batch_norm_synchronized": self.batch_norm_synchronized,
                "seed": self.seed,
            }
        )
        return config
