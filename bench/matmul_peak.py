"""The machine's practical float32 limit: GFLOP/s of a large square matmul.

    python -m bench.matmul_peak --quick     # n = 2048
    python -m bench.matmul_peak             # n = 2048, 4096, 8192

A dense n x n x n float32 matmul is 2 n^3 FLOPs and runs close to the
hardware's peak in every framework's BLAS (oneDNN/Eigen in TensorFlow, MKL or
OpenBLAS in NumPy and PyTorch), so its rate is the ceiling that a network's
forward pass can be compared against. `bench/model_inference.py` measures it
in the same run as the models.
"""

import os

from absl import app, flags

from bench import common

FLAGS = flags.FLAGS


def _tf_matmul(n):
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(0)
    a = generator.normal((n, n), dtype=tf.float32)
    b = generator.normal((n, n), dtype=tf.float32)

    @tf.function
    def product():
        # A scalar result forces the product without copying n^2 values out.
        return tf.reduce_sum(tf.matmul(a, b))

    return lambda: product().numpy()


def _numpy_matmul(n):
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return lambda: a @ b


def _torch_matmul(n):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator().manual_seed(0)
    a = torch.randn((n, n), generator=generator).to(device)
    b = torch.randn((n, n), generator=generator).to(device)

    def product():
        result = a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    return product


MATMULS = {"tensorflow": _tf_matmul, "numpy": _numpy_matmul, "torch": _torch_matmul}


def matmul_gflops(framework, n, *, repeats=3, warmup=1):
    """(median, best) GFLOP/s of an n x n x n float32 matmul in `framework`."""
    if framework not in MATMULS:
        raise ValueError(f"`framework` must be one of {sorted(MATMULS)}, got {framework!r}.")
    timing = common.time_calls(MATMULS[framework](int(n)), warmup=warmup, repeats=repeats)
    flops = 2.0 * n**3
    return flops / timing.median / 1e9, flops / timing.best / 1e9


def practical_peak(n=2048, *, repeats=3, frameworks=("tensorflow", "torch")):
    """{framework: GFLOP/s of the fastest call} and the highest of them (the practical limit).

    The fastest call, as for the models' timings in bench/: on a shared
    machine it is the one least disturbed by other work.
    """
    rates = {}
    for framework in frameworks:
        try:
            rates[framework] = matmul_gflops(framework, n, repeats=repeats)[1]
        except ImportError:
            continue
    return rates, max(rates.values())


def isolated_gflops(framework, n, repeats, threads):
    """`matmul_gflops` in this (fresh) process with `threads` CPU threads."""
    if framework == "numpy":
        # NumPy's BLAS reads its thread count from the environment when loaded.
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(threads)
    else:
        common.set_threads(threads, frameworks=(framework,))
    return matmul_gflops(framework, n, repeats=repeats)


def define_flags():
    """Command-line flags (defined only when run as a script)."""
    flags.DEFINE_bool("quick", False, "One size (2048), 5 repetitions, 1 and all threads.")
    flags.DEFINE_list("sizes", None, "Matrix sizes n (default: 2048 quick, 2048,4096,8192 full).")
    flags.DEFINE_integer("repeats", None, "Timed repetitions (default 5 quick, 10 full).")
    flags.DEFINE_list("frameworks", ["tensorflow", "numpy", "torch"], "Which matmuls to time.")
    flags.DEFINE_list("threads", None, "Thread counts (default: 1 and all cores).")


def main(argv):
    del argv
    common.quiet_logs()
    sizes = [int(size) for size in (FLAGS.sizes or ([2048] if FLAGS.quick else [2048, 4096, 8192]))]
    repeats = FLAGS.repeats or (5 if FLAGS.quick else 10)
    threads_list = [int(t) for t in FLAGS.threads or sorted({1, common.cpu_count()})]
    print(
        common.header(
            "float32 matmul peak",
            {
                "sizes": sizes,
                "repeats": repeats,
                "threads": ",".join(map(str, threads_list)),
                "frameworks": ",".join(FLAGS.frameworks),
            },
        )
    )
    rows, best = [], {}
    for threads in threads_list:
        for n in sizes:
            for framework in FLAGS.frameworks:
                try:
                    median, top = common.run_isolated(
                        isolated_gflops, framework, n, repeats, threads
                    )
                except ImportError:
                    rows.append([framework, threads, n, "not installed", "-"])
                    continue
                best[threads] = max(best.get(threads, 0.0), top)
                rows.append([framework, threads, n, common.fmt(median, 1), common.fmt(top, 1)])
    print(
        common.markdown_table(
            ["framework", "threads", "n", "GFLOP/s (median)", "GFLOP/s (best)"], rows
        )
    )
    for threads, rate in best.items():
        print(
            f"\npractical float32 limit at {threads} thread(s) (fastest call): {rate:.1f} GFLOP/s, "
            f"{rate / threads:.1f} GFLOP/s per thread"
        )


if __name__ == "__main__":
    define_flags()
    app.run(main)
