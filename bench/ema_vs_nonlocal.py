"""The EMA unit against a non-local block on the same feature map: time, peak memory, FLOPs.

    python -m bench.ema_vs_nonlocal --quick     # 65x65 (batch 1, 4) and 129x129 (batch 1)
    python -m bench.ema_vs_nonlocal             # also 129x129 at batch 4 (~13 GiB for non-local)

Both blocks run on a (B, H, W, 512) map, inference mode, in a `tf.function`.
The EMA unit is `ema_keras.layers.EMAUnit` (K=64 bases, T=3 iterations); the
non-local block is the embedded-Gaussian one of Wang et al. (2018), defined
below (it is a comparison point, not part of the library). Its attention is
O(N^2 C) in time and O(N^2) in memory for N = H * W positions, the EMA
unit's O(N K C T) and O(N K): at 65x65 (EMANet's 513x513 input at output
stride 8) N = 4225 against K = 64.

Times are the fastest of the timed calls (the median is shown too); ratios
use the fastest. Every configuration runs in a fresh process; peak memory is
what the forward passes add to the resident set (see `common.PeakMemory`),
first call included (with --jit_compile that includes XLA's compilation). FLOPs are 2 x MACs
from `ema_keras.cost` (`ema_unit_cost`, `non_local_cost`); the non-local
block's count is also derived from its built layers (`non_local_macs`), and
the two agree (tests/test_bench_smoke.py).
"""


import keras
from absl import app, flags
from keras import ops

from bench import common

FLAGS = flags.FLAGS


@keras.saving.register_keras_serializable(package="ema_keras_bench")
class NonLocalBlock(keras.layers.Layer):
    """Embedded-Gaussian non-local block: x + BN(W softmax(theta(x) phi(x)^T) g(x)).

    theta, phi and g are 1x1 convs C -> C / reduction with bias; W is a 1x1
    conv back to C with bias, followed by BatchNorm.
    """

    def __init__(self, reduction=2, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"`reduction` must be >= 1, got {reduction}.")
        self.reduction = int(reduction)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"NonLocalBlock needs a known channel dimension, got {input_shape}.")
        inner = channels // self.reduction
        convs = {}
        for name, filters in (("theta", inner), ("phi", inner), ("g", inner)):
            convs[name] = keras.layers.Conv2D(filters, 1, dtype=self.dtype_policy, name=name)
            convs[name].build(input_shape)
        self.theta, self.phi, self.g = convs["theta"], convs["phi"], convs["g"]
        self.output_conv = keras.layers.Conv2D(
            channels, 1, dtype=self.dtype_policy, name="output_conv"
        )
        self.output_conv.build((*input_shape[:-1], inner))
        self.output_norm = keras.layers.BatchNormalization(
            epsilon=1e-5, dtype=self.dtype_policy, name="output_norm"
        )
        self.output_norm.build(input_shape)

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]

        def flat(tensor):
            return ops.reshape(tensor, (batch, height * width, ops.shape(tensor)[-1]))

        theta, phi, g = flat(self.theta(inputs)), flat(self.phi(inputs)), flat(self.g(inputs))
        attention = ops.softmax(ops.einsum("bnc,bmc->bnm", theta, phi), axis=-1)  # (B, N, N)
        y = ops.einsum("bnm,bmc->bnc", attention, g)
        y = ops.reshape(y, (batch, height, width, ops.shape(y)[-1]))
        return inputs + self.output_norm(self.output_conv(y), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


def non_local_macs(block, height, width):
    """(params as PyTorch counts them, MACs) of a built `NonLocalBlock`, from its layers."""
    from ema_keras import cost

    total = cost.Cost()
    for conv in (block.theta, block.phi, block.g, block.output_conv):
        kernel_shape = tuple(conv.kernel.shape)
        total += cost.conv_cost(kernel_shape, (1, height, width, kernel_shape[-1]), conv.use_bias)
    total += cost.Cost(2 * block.output_norm.gamma.shape[0], 0)  # gamma, beta
    inner = block.theta.filters
    pixels = height * width
    total += cost.Cost(0, 2 * pixels * pixels * inner)  # theta phi^T, then attention . g
    return total


def block_cost(block, channels, size, num_bases, num_iterations):
    """`ema_keras.cost` figures of one block on a size x size map: (whole block, attention)."""
    from ema_keras import cost

    if block == "ema":
        whole = cost.ema_unit_cost(channels, num_bases, num_iterations, size, size)
        attention = cost.em_attention_cost(channels, num_bases, num_iterations, size, size)
    else:
        whole = cost.non_local_cost(channels, size, size)
        attention = cost.Cost(0, 2 * (size * size) ** 2 * (channels // 2))
    return whole, attention


def measure(
    block, *, size, batch, channels, num_bases, num_iterations, repeats, jit_compile, threads=None
):
    """Seconds per forward pass (best and median) and the peak memory it adds, in this process."""
    common.set_threads(threads)
    import tensorflow as tf

    import ema_keras  # noqa: F401  (registers the library's layers)
    from ema_keras.layers import EMAUnit

    keras.utils.set_random_seed(0)
    if block == "ema":
        layer = EMAUnit(num_bases=num_bases, num_iterations=num_iterations, seed=0)
    else:
        layer = NonLocalBlock()
    inputs = tf.random.stateless_normal((batch, size, size, channels), seed=(0, 1))
    layer.build(inputs.shape)

    @tf.function(jit_compile=jit_compile)
    def forward(x):
        return layer(x, training=False)

    # Trace outside the measurement, but run the first call inside it: the
    # memory a call frees stays in the allocator's pools, so a peak taken
    # after a warm-up call would miss what the call needs.
    forward.get_concrete_function(inputs)
    with common.PeakMemory() as peak:
        timing = common.time_calls(lambda: forward(inputs).numpy(), warmup=1, repeats=repeats)
    return {"seconds": timing.best, "median_seconds": timing.median, "peak_bytes": peak.bytes}


def define_flags():
    """Command-line flags (defined only when run as a script)."""
    flags.DEFINE_bool("quick", False, "65x65 at batch 1 and 4, 129x129 at batch 1; 2 repetitions.")
    flags.DEFINE_list("sizes", None, "Feature map sizes (default 65,129).")
    flags.DEFINE_list("batches", None, "Batch sizes (default 1,4).")
    flags.DEFINE_integer("channels", 512, "Channels C of the feature map.")
    flags.DEFINE_integer("num_bases", 64, "EMA bases K.")
    flags.DEFINE_integer("num_iterations", 3, "EMA iterations T.")
    flags.DEFINE_integer("repeats", None, "Timed repetitions (default 2 quick, 5 full).")
    flags.DEFINE_bool("jit_compile", False, "Compile both blocks with XLA.")
    flags.DEFINE_integer("threads", None, "TensorFlow CPU threads (default: all cores).")
    flags.DEFINE_float(
        "max_attention_gib", 16.0, "Skip non-local runs whose N x N attention exceeds this."
    )


def main(argv):
    del argv
    common.quiet_logs()
    sizes = [int(s) for s in FLAGS.sizes or (65, 129)]
    batches = [int(b) for b in FLAGS.batches or (1, 4)]
    configurations = [(size, batch) for size in sizes for batch in batches]
    if FLAGS.quick and not (FLAGS.sizes or FLAGS.batches):
        configurations = [(65, 1), (65, 4), (129, 1)]
    repeats = FLAGS.repeats or (2 if FLAGS.quick else 5)
    channels, num_bases, num_iterations = FLAGS.channels, FLAGS.num_bases, FLAGS.num_iterations
    print(
        common.header(
            "EMA unit vs non-local block",
            {
                "maps": " ".join(f"{s}x{s}x{channels}@batch{b}" for s, b in configurations),
                "K": num_bases,
                "T": num_iterations,
                "repeats": repeats,
                "jit_compile": FLAGS.jit_compile,
                "threads": FLAGS.threads or "all",
                "mode": "inference, tf.function",
            },
        )
    )
    results = {}
    rows = []
    for size, batch in configurations:
        for block in ("ema", "non_local"):
            whole, attention = block_cost(block, channels, size, num_bases, num_iterations)
            attention_bytes = 4 * batch * (size * size) ** 2
            name = "EMA unit" if block == "ema" else "non-local"
            if block == "non_local" and attention_bytes > FLAGS.max_attention_gib * 2**30:
                print(
                    f"skipped non-local at {size}x{size}, batch {batch}: its attention alone "
                    f"is {attention_bytes / 2**30:.1f} GiB (--max_attention_gib)"
                )
                continue
            result = common.run_isolated(
                measure,
                block,
                size=size,
                batch=batch,
                channels=channels,
                num_bases=num_bases,
                num_iterations=num_iterations,
                repeats=repeats,
                jit_compile=FLAGS.jit_compile,
                threads=FLAGS.threads,
            )
            result.update(flops=whole.flops, attention_flops=attention.flops)
            results[block, size, batch] = result
            seconds = result["seconds"]
            rows.append(
                [
                    name,
                    f"{size}x{size}",
                    batch,
                    common.fmt(whole.flops / 1e9, 1),
                    common.fmt(attention.flops / 1e9, 2),
                    common.fmt(1000 * seconds, 0),
                    common.fmt(1000 * result["median_seconds"], 0),
                    common.fmt(common.mib(result["peak_bytes"]), 0),
                    common.fmt(batch * whole.flops / seconds / 1e9, 1),
                ]
            )
            print(f"  measured {name} {size}x{size} batch {batch}: {1000 * seconds:.0f} ms")
    print()
    print(
        common.markdown_table(
            [
                "block",
                "map",
                "batch",
                "GFLOPs/image",
                "attention GFLOPs/image",
                "ms/batch (best)",
                "ms/batch (median)",
                "peak MiB",
                "GFLOP/s",
            ],
            rows,
        )
    )
    ratio_rows = []
    for size, batch in configurations:
        ema, local = results.get(("ema", size, batch)), results.get(("non_local", size, batch))
        if not (ema and local):
            continue
        memory_ratio = (
            local["peak_bytes"] / ema["peak_bytes"] if ema["peak_bytes"] else None
        )
        ratio_rows.append(
            [
                f"{size}x{size}",
                batch,
                common.fmt(local["seconds"] / ema["seconds"], 1) + "x",
                common.fmt(memory_ratio, 1) + "x",
                common.fmt(local["flops"] / ema["flops"], 1) + "x",
                common.fmt(local["attention_flops"] / ema["attention_flops"], 1) + "x",
            ]
        )
    print("\nnon-local / EMA unit (higher = EMA cheaper):\n")
    print(
        common.markdown_table(
            ["map", "batch", "time", "peak memory", "FLOPs (block)", "FLOPs (attention)"],
            ratio_rows,
        )
    )
    per_pixel = (2 * num_iterations + 1) * num_bases  # EMA's MACs per pixel and channel
    print(
        f"\nattention MACs: non-local N^2 C = {channels} N^2 per image, EMA (2T+1) N K C = "
        f"{per_pixel * channels} N: ratio N / {per_pixel} "
        f"(= {65 * 65 / per_pixel:.1f} at 65x65, {129 * 129 / per_pixel:.1f} at 129x129)"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
