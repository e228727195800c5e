"""Whole-model inference: Keras (eager, graph, XLA), TFLite and the PyTorch reference, one run.

    python bench/model_inference.py --quick   # R50 OS16 at 321x321, every runtime: minutes
    python bench/model_inference.py           # R50/R101, OS8/OS16 at 513x513

For each EMANet preset, on the same machine and in the same process:

- Keras: eager `model(x)`, the same call in a `tf.function`, and with
  `jit_compile=True` (XLA);
- TFLite through ai_edge_litert (XNNPACK, all cores): float32, float16
  weights and full-integer int8, written by `ema_keras.export.export_tflite`
  (they take raw pixels, ImageNet normalisation in the graph; int8 is
  calibrated on a few random images, which is enough for timing only);
- PyTorch: `bench/torch_reference` (the official architecture and layer
  names, CPU build of torch), `eval()` under `torch.inference_mode()`.

Random weights, batch 1. Rates are images/s from the fastest of the timed
calls (the median is shown too): on a shared machine the fastest call is
the one least disturbed by other work. The FLOPs per image are
`ema_keras.cost.model_cost` (2 x MACs of the convolutions and the EM
attention), the same for every runtime, so
"GFLOP/s" is the achieved rate and "% of peak" its fraction of the float32
matmul rate measured at the start of the run (`bench/matmul_peak.py`).
The backbone/head split (`--breakdown`) times the trunk alone in both
frameworks: head = whole - trunk.
"""

import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import matmul_peak  # noqa: E402

FLAGS = flags.FLAGS
RUNTIMES = (
    "keras_eager",
    "keras_graph",
    "keras_xla",
    "tflite_float32",
    "tflite_float16",
    "tflite_int8",
    "torch",
)
PRESETS = (
    "emanet_resnet50_os8_voc",
    "emanet_resnet101_os8_voc",
    "emanet_resnet50_os16",
    "emanet_resnet101_os16_voc",
)


def preset_architecture(preset):
    """(depth, output_stride) of a preset, for the PyTorch model."""
    from ema_keras.models.presets import get_preset

    config = get_preset(preset)
    backbone = config["backbone"]
    if backbone.get("stem") != "deep" or config.get("aux_head") or config.get("concat_input"):
        raise ValueError(
            f"Preset {preset!r} is not the official architecture (deep stem, no aux head), "
            "which is all the PyTorch reference builds."
        )
    return backbone["depth"], backbone["output_stride"], config["num_classes"]


def keras_runners(model, image, *, breakdown):
    """{runtime: fn} for the Keras runtimes, and the backbone-only graph runner."""
    import tensorflow as tf

    x = tf.constant(image)
    graph = tf.function(lambda v: model(v, training=False))
    xla = tf.function(lambda v: model(v, training=False), jit_compile=True)
    runners = {
        "keras_eager": lambda: model(x, training=False).numpy(),
        "keras_graph": lambda: graph(x).numpy(),
        "keras_xla": lambda: xla(x).numpy(),
    }
    trunk = None
    if breakdown:
        backbone = tf.function(lambda v: model.backbone(v, training=False)["P5"])
        trunk = lambda: backbone(x).numpy()  # noqa: E731
    return runners, trunk


def tflite_runner(model, quantization, size, work_dir, num_threads):
    """A callable running the exported file on one raw-pixel image, and the export's seconds."""
    from ema_keras.export import export_tflite, tflite_interpreter

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    # The timed image is among the calibration images, so int8 sees no value
    # outside its calibrated ranges.
    calibration = [pixels[0], rng.integers(0, 256, (size, size, 3), dtype=np.uint8)]
    path = os.path.join(work_dir, f"{model.name}_{quantization}.tflite")
    start = time.perf_counter()
    export_tflite(
        model,
        path,
        quantization=quantization,
        image_size=(size, size),
        representative_images=calibration if quantization == "int8" else None,
    )
    export_seconds = time.perf_counter() - start
    runner = tflite_interpreter(path, num_threads).get_signature_runner()
    pixels = pixels.astype(runner.get_input_details()["image"]["dtype"])
    return (lambda: runner(image=pixels)), export_seconds, os.path.getsize(path)


def torch_runners(depth, output_stride, num_classes, image, *, breakdown):
    """The PyTorch reference (whole model, and its trunk) on the same image, NCHW."""
    import torch
    from torch_reference.emanet_torch import EMANet as TorchEMANet

    torch.manual_seed(0)
    net = TorchEMANet(num_classes=num_classes, depth=depth, output_stride=output_stride).eval()
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2)))

    def whole():
        with torch.inference_mode():
            return net(x)

    def trunk():
        with torch.inference_mode():
            return net.extractor(x)

    params = sum(p.numel() for p in net.parameters())
    return whole, (trunk if breakdown else None), params


def bench_preset(preset, size, runtimes, repeats, work_dir, breakdown):
    import keras

    from ema_keras import cost
    from ema_keras.models import EMANet

    keras.utils.set_random_seed(0)
    model = EMANet.from_preset(preset, seed=0)
    model_cost = cost.model_cost(model, input_size=(size, size))
    flops = model_cost["total"].flops
    image = np.random.default_rng(0).normal(size=(1, size, size, 3)).astype(np.float32)
    runners, keras_trunk = keras_runners(model, image, breakdown=breakdown)
    notes = [f"{preset}: {model_cost['total'].params / 1e6:.2f} M params (PyTorch-style count)"]
    seconds, medians, trunk_seconds = {}, {}, {}
    for runtime in runtimes:
        try:
            timing, runtime_notes, trunk = time_runtime(
                runtime,
                preset,
                model,
                runners,
                image,
                size=size,
                repeats=repeats,
                breakdown=breakdown,
                work_dir=work_dir,
            )
        except Exception as error:  # noqa: BLE001  (one failing runtime must not hide the others)
            notes.append(f"{runtime} FAILED: {type(error).__name__}: {str(error)[:300]}")
            print(f"  {preset} {runtime}: failed ({type(error).__name__})", flush=True)
            continue
        seconds[runtime], medians[runtime] = timing.best, timing.median
        notes += runtime_notes
        if trunk is not None:
            trunk_seconds[runtime] = trunk
    if keras_trunk is not None:
        trunk_seconds["keras_graph"] = common.time_calls(keras_trunk, repeats=repeats).best
    backbone_flops = model_cost["backbone"].flops
    return {
        "flops": flops,
        "backbone_flops": backbone_flops,
        "seconds": seconds,
        "median_seconds": medians,
        "trunk_seconds": trunk_seconds,
        "notes": notes,
    }


def time_runtime(runtime, preset, model, runners, image, *, size, repeats, breakdown, work_dir):
    """(`Timing` per image, notes, best seconds of the trunk alone or None) of one runtime.

    Setup (export, model building) and one warm-up call (tracing, compiling,
    weight packing) come first, untimed.
    """
    start = time.perf_counter()
    notes, trunk_seconds = [], None
    if runtime in runners:
        fn = runners[runtime]
    elif runtime.startswith("tflite_"):
        quantization = runtime[len("tflite_") :]
        fn, export_seconds, size_bytes = tflite_runner(
            model, quantization, size, work_dir, FLAGS.num_threads
        )
        notes.append(f"{runtime}: exported in {export_seconds:.0f} s, {size_bytes / 2**20:.1f} MiB")
    elif runtime == "torch":
        fn, torch_trunk, torch_params = torch_runners(
            *preset_architecture(preset), image, breakdown=breakdown
        )
        notes.append(f"torch reference: {torch_params / 1e6:.2f} M params")
        if torch_trunk is not None:
            trunk_seconds = common.time_calls(torch_trunk, repeats=repeats).best
    else:
        raise ValueError(f"Unknown runtime {runtime!r}; choose from {RUNTIMES}.")
    timing = common.time_calls(fn, warmup=1, repeats=repeats)
    print(
        f"  {preset} {runtime}: {1000 * timing.best:.0f} ms/image "
        f"({time.perf_counter() - start:.0f} s with setup)",
        flush=True,
    )
    return timing, notes, trunk_seconds


def define_flags():
    """Command-line flags (defined only when run as a script)."""
    flags.DEFINE_bool("quick", False, "emanet_resnet50_os16 at 321x321, 2 timed calls.")
    flags.DEFINE_list("presets", None, f"EMANet presets (default: {', '.join(PRESETS)}).")
    flags.DEFINE_list("runtimes", list(RUNTIMES), "Which runtimes to time.")
    flags.DEFINE_integer("image_size", None, "Square input size (default 513; 321 with --quick).")
    flags.DEFINE_integer("repeats", None, "Timed calls per runtime (default 2 quick, 5 full).")
    flags.DEFINE_integer("matmul_size", 2048, "n of the n x n x n matmul that sets the peak.")
    flags.DEFINE_bool("breakdown", True, "Also time the backbone alone (Keras graph, PyTorch).")
    flags.DEFINE_integer("num_threads", None, "TFLite threads (default: all cores).")


def main(argv):
    del argv
    common.quiet_logs()
    quick = FLAGS.quick
    presets = FLAGS.presets or (["emanet_resnet50_os16"] if quick else list(PRESETS))
    size = FLAGS.image_size or (321 if quick else 513)
    repeats = FLAGS.repeats or (2 if quick else 5)
    runtimes = list(FLAGS.runtimes)
    for runtime in runtimes:
        if runtime not in RUNTIMES:
            raise app.UsageError(f"--runtimes: unknown {runtime!r}; choose from {RUNTIMES}.")
    print(
        common.header(
            "EMANet inference",
            {
                "presets": ",".join(presets),
                "input": f"{size}x{size}",
                "batch": 1,
                "repeats": repeats,
                "runtimes": ",".join(runtimes),
                "weights": "random",
            },
        )
    )
    rates, peak = matmul_peak.practical_peak(FLAGS.matmul_size, repeats=3)
    print(
        f"matmul peak (n={FLAGS.matmul_size}, float32): "
        + ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items())
        + f" GFLOP/s; peak = {peak:.1f} GFLOP/s\n"
    )
    work_dir = tempfile.mkdtemp(prefix="model_inference_")
    results = {}
    for preset in presets:
        results[preset] = bench_preset(
            preset, size, runtimes, repeats, work_dir, FLAGS.breakdown
        )

    rows = []
    for preset, result in results.items():
        torch_seconds = result["seconds"].get("torch")
        for runtime, seconds in result["seconds"].items():
            gflops = result["flops"] / seconds / 1e9
            # int8 runs integer arithmetic: no float32 ceiling to compare with.
            fraction = None if runtime == "tflite_int8" else 100 * gflops / peak
            rows.append(
                [
                    preset,
                    runtime,
                    common.fmt(result["flops"] / 1e9, 1),
                    common.fmt(1000 * seconds, 1),
                    common.fmt(1000 * result["median_seconds"][runtime], 1),
                    common.fmt(1 / seconds, 2),
                    common.fmt(torch_seconds / seconds if torch_seconds else None, 2),
                    common.fmt(gflops, 1),
                    common.fmt(fraction, 0),
                ]
            )
    print()
    print(
        common.markdown_table(
            [
                "model",
                "runtime",
                "GFLOPs/image",
                "ms/image (best)",
                "ms (median)",
                "images/s",
                "vs PyTorch (x)",
                "GFLOP/s",
                "% of matmul peak",
            ],
            rows,
        )
    )
    breakdown_rows = []
    for preset, result in results.items():
        trunk = result["trunk_seconds"]
        for runtime, label in (("keras_graph", "Keras graph"), ("torch", "PyTorch")):
            if runtime not in trunk or runtime not in result["seconds"]:
                continue
            whole = result["seconds"][runtime]
            head = whole - trunk[runtime]
            head_flops = result["flops"] - result["backbone_flops"]
            breakdown_rows.append(
                [
                    preset,
                    label,
                    common.fmt(1000 * trunk[runtime], 0),
                    common.fmt(result["backbone_flops"] / trunk[runtime] / 1e9, 1),
                    common.fmt(1000 * head, 0),
                    common.fmt(head_flops / head / 1e9 if head > 0 else None, 1),
                ]
            )
    if breakdown_rows:
        print("\nwhere the time goes (head = whole model - backbone):\n")
        print(
            common.markdown_table(
                ["model", "runtime", "backbone ms", "backbone GFLOP/s", "head ms", "head GFLOP/s"],
                breakdown_rows,
            )
        )
    print()
    for preset, result in results.items():
        for note in result["notes"]:
            print(f"- {note}")
        seconds = result["seconds"]
        for fast, slow in (("keras_xla", "keras_graph"), ("keras_graph", "keras_eager")):
            if fast in seconds and slow in seconds:
                print(f"- {preset}: {fast} is {seconds[slow] / seconds[fast]:.2f}x {slow}'s rate")
    print(f"- TFLite files in {work_dir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
