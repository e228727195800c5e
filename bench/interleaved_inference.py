"""Keras inference paths and PyTorch in ONE process, calls interleaved: ratios a shared CPU keeps.

    python -m bench.interleaved_inference --threads 1 --rounds 3
    python -m bench.interleaved_inference --preset emanet_resnet50_os16 --image_size 321

`bench/model_inference.py` runs each framework in a fresh process, one after
the other; when other jobs come and go on the machine, the load one runtime
met is not the load the next one met. Here every runtime runs once per
round, round after round, in the same process (TensorFlow and PyTorch both
capped at `--threads`), so each ratio compares calls made seconds apart. The
runtimes: a 2048^3 float32 matmul (the peak), the Keras model as built, with
its BatchNorms folded (`ema_keras.inference.folding`; what the programs run),
folded with Keras' SpaceToBatchND lowering of the dilated convolutions
(`inference_profile.keras_dilation_lowering`: what ema-keras ran before
`DilatedConv2D`), folded in bfloat16, and the PyTorch reference. Times are
the fastest call of the rounds (the median is printed too); FLOPs per image
from `ema_keras.cost.model_cost`.
"""

import os
import time

import numpy as np
from absl import app, flags

from bench import common, inference_profile, matmul_peak, model_inference

FLAGS = flags.FLAGS
MATMUL = "float32 matmul 2048^3"


def runners(preset, size):
    """{name: fn} of every runtime, built and traced (warm), and the FLOPs per image."""
    import keras
    import tensorflow as tf

    from ema_keras import cost
    from ema_keras.inference.folding import fold_batch_norm
    from ema_keras.models import EMANetImageSegmenter

    keras.utils.set_random_seed(0)
    model = EMANetImageSegmenter.from_preset(preset, seed=0)
    flops = cost.model_cost(model, input_size=(size, size))["total"].flops
    image = np.random.default_rng(0).normal(size=(1, size, size, 3)).astype(np.float32)
    x = tf.constant(image)
    folded = fold_batch_norm(model)

    def graph(built):
        function = tf.function(lambda v: built(v, training=False))
        return lambda: function(x).numpy()

    space_to_batch = tf.function(lambda v: folded(v, training=False))
    with inference_profile.keras_dilation_lowering():
        space_to_batch(x)  # traced here, with Keras' lowering
    torch_whole, _, _ = model_inference.torch_runners(
        *model_inference.preset_architecture(preset), image, breakdown=False
    )
    fns = {
        MATMUL: matmul_peak.MATMULS["tensorflow"](2048),
        "Keras as built": graph(model),
        "Keras, BatchNorm folded": graph(folded),
        "Keras, folded, SpaceToBatchND dilated convs (before)": lambda: space_to_batch(x).numpy(),
        "Keras, folded, bfloat16": graph(fold_batch_norm(model, dtype="mixed_bfloat16")),
        "PyTorch reference": torch_whole,
    }
    for fn in fns.values():
        fn()  # warm-up: tracing, allocation, oneDNN primitive creation
    return fns, flops


def define_flags():
    """Command-line flags (defined only when run as a script)."""
    flags.DEFINE_string("preset", "emanet_resnet101_os8_voc", "EMANet preset.")
    flags.DEFINE_integer("image_size", 513, "Square input size.")
    flags.DEFINE_integer("threads", 1, "CPU threads of TensorFlow and PyTorch.")
    flags.DEFINE_integer("rounds", 3, "Rounds; each runs every runtime once.", lower_bound=1)


def main(argv):
    del argv
    common.quiet_logs()
    common.set_threads(FLAGS.threads, frameworks=("tensorflow", "torch"))
    settings = {"preset": FLAGS.preset, "input": f"{FLAGS.image_size}x{FLAGS.image_size}",
                "threads": FLAGS.threads, "rounds": FLAGS.rounds, "weights": "random"}  # fmt: skip
    print(common.header("EMANet inference, runtimes interleaved in one process", settings))
    fns, flops = runners(FLAGS.preset, FLAGS.image_size)
    seconds = {name: [] for name in fns}
    for round_index in range(FLAGS.rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
        load = os.getloadavg()[0]
        print(f"round {round_index + 1}: load {load:.1f}", flush=True)
    peak = 2 * 2048**3 / min(seconds.pop(MATMUL)) / 1e9
    torch_best = min(seconds["PyTorch reference"])
    rows = []
    for name, values in seconds.items():
        best = min(values)
        rate = flops / best / 1e9
        fraction = None if "bfloat16" in name else 100 * rate / peak
        rows.append([name, common.fmt(1000 * best, 0), common.fmt(1000 * np.median(values), 0),
                     common.fmt(torch_best / best, 2), common.fmt(rate, 1),
                     common.fmt(fraction, 0)])  # fmt: skip
    print()
    print(common.markdown_table(
        ["runtime", "ms (best)", "ms (median)", "vs PyTorch (x)", "GFLOP/s", "% of matmul peak"],
        rows,
    ))  # fmt: skip
    print(f"\nfloat32 matmul peak, {FLAGS.threads} thread(s): {peak:.1f} GFLOP/s; "
          f"{flops / 1e9:.1f} GFLOPs per image")  # fmt: skip


if __name__ == "__main__":
    define_flags()
    app.run(main)
