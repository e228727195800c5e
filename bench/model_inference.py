"""Whole-model inference: Keras (eager, graph, XLA), TFLite and the PyTorch reference, one run.

    python -m bench.model_inference --quick   # R50 OS16 at 321x321, 1 and all threads: minutes
    python -m bench.model_inference           # R50/R101, OS8/OS16 at 513x513, all threads

For each EMANet preset and thread count, on the same machine in the same run:

- Keras: eager `model(x)`, the same call in a `tf.function`, and with
  `jit_compile=True` (XLA); the inference model of `ema_keras.inference.precision`
  (BatchNorm folded into the convolutions) in float32 and in bfloat16
  (`mixed_bfloat16`, in a `tf.function`);
- TFLite through ai_edge_litert (XNNPACK): float32, float16 weights and
  full-integer int8, written by `ema_keras.export.export_tflite` (raw pixels
  in, ImageNet normalisation in the graph; int8 is calibrated on the timed
  random image and four demo-style images);
- PyTorch: `bench/torch_reference` (the official architecture and layer
  names, CPU build of torch), `eval()` under `torch.inference_mode()`.

Each framework runs in a fresh process (TensorFlow and TFLite in one,
PyTorch in another), with its threads capped at the thread count; the
float32 matmul peak (`bench/matmul_peak.py`) is measured the same way, once
per thread count. Random weights, batch 1. Rates are images/s from the
fastest of the timed calls (the median is shown too): on a shared machine
the fastest call is the one least disturbed by other work. The FLOPs per
image are `ema_keras.cost.model_cost` (2 x MACs of the convolutions and the
EM attention), the same for every runtime, so "GFLOP/s" is the achieved rate
and "% of peak" its fraction of the matmul's. The backbone/head split
(`--breakdown`) times the trunk alone in both frameworks (head = whole -
trunk), then each part of the head on a random feature map of the right
size, to show where one framework loses to the other.

Argmax agreement: every runtime but PyTorch also labels `--agreement_images`
demo-style images (`ema_keras.data.demo.draw_demo_example`, drawn at the
bench's size, others than int8's calibration images), and the table gives
the share of pixels whose class equals the float32 Keras model's (as built):
what `--precision` accepts from 99.5%. With random weights the logits are
closer to each other than a trained model's, so this is a harsh test.
The table's header names the CPU and the instruction-set flags that decide
which kernels run (`common.header`): a ratio holds for that CPU kind only.
"""

import os
import tempfile
import time

import numpy as np
from absl import app, flags

from bench import common, matmul_peak

FLAGS = flags.FLAGS
KERAS_RUNTIMES = ("keras_eager", "keras_graph", "keras_xla", "keras_folded", "keras_bfloat16")
TFLITE_RUNTIMES = ("tflite_float32", "tflite_float16", "tflite_int8")
RUNTIMES = KERAS_RUNTIMES + TFLITE_RUNTIMES + ("torch",)
PRESETS = (
    "emanet_resnet50_os8_voc",
    "emanet_resnet101_os8_voc",
    "emanet_resnet50_os16",
    "emanet_resnet101_os16_voc",
)


def preset_architecture(preset):
    """(depth, output_stride) of a preset, for the PyTorch model."""
    from ema_keras.models.presets import get_preset

    config = get_preset(preset)  # segmenter, its backbone (the head), its image encoder
    backbone = config["backbone"]["image_encoder"]
    concat_input = config["backbone"].get("concat_input")
    if backbone.get("stem") != "deep" or config.get("aux_head") or concat_input:
        raise ValueError(
            f"Preset {preset!r} is not the official architecture (deep stem, no aux head), "
            "which is all the PyTorch reference builds."
        )
    return backbone["depth"], backbone["output_stride"], config["num_classes"]


def keras_models(model, runtimes):
    """{runtime: (model, jit_compile)} of the Keras graph runtimes in `runtimes`."""
    from ema_keras.inference.precision import inference_model

    models = {"keras_graph": (model, False), "keras_xla": (model, True)}
    if "keras_folded" in runtimes:
        models["keras_folded"] = (inference_model(model, "float32").model, False)
    if "keras_bfloat16" in runtimes:
        models["keras_bfloat16"] = (inference_model(model, "bfloat16").model, False)
    return {name: built for name, built in models.items() if name in runtimes}


def keras_runners(model, image, *, breakdown, runtimes=KERAS_RUNTIMES):
    """{runtime: fn} for the Keras runtimes, the backbone-only graph runner, {runtime: graph}."""
    import tensorflow as tf

    x = tf.constant(image)
    graphs = {
        name: tf.function(lambda v, m=built: m(v, training=False), jit_compile=jit)
        for name, (built, jit) in keras_models(model, runtimes).items()
    }
    runners = {name: (lambda g=graph: g(x).numpy()) for name, graph in graphs.items()}
    runners["keras_eager"] = lambda: model(x, training=False).numpy()
    trunk = None
    if breakdown:
        from ema_keras.models.segmenter_parts import image_encoder_of

        encoder = image_encoder_of(model)
        backbone = tf.function(lambda v: encoder(v, training=False)["P5"])
        trunk = lambda: backbone(x).numpy()  # noqa: E731
    return runners, trunk, graphs


def demo_images(count, size, seed=1000):
    """`count` demo-style (size, size, 3) uint8 images, each from its own seed."""
    from ema_keras.data.demo import draw_demo_example

    return [draw_demo_example(np.random.default_rng(seed + i), size, size)[0] for i in range(count)]


def keras_labels(graph, model, images):
    """(H, W) class maps of a Keras graph runner on uint8 images, fed as the model expects."""
    from ema_keras.models.input_contract import model_inputs
    from ema_keras.models.outputs import main_logits

    return [
        np.argmax(np.asarray(main_logits(graph(model_inputs(model, image[None])))), -1)[0]
        for image in images
    ]


def tflite_labels(runner, images):
    """Class maps of a TFLite signature runner (argmax survives int8's affine dequantization)."""
    dtype = runner.get_input_details()["image"]["dtype"]
    return [np.argmax(runner(image=image[None].astype(dtype))["logits"], -1)[0] for image in images]


def agreement(labels, reference):
    from ema_keras.inference.precision import argmax_agreement

    return argmax_agreement(labels, reference)


def tflite_runner(model, preset, quantization, size, work_dir, num_threads):
    """A callable running the exported file on one raw-pixel image, and a note on the export.

    The file is written once per model, size and quantization, and reused by
    later thread counts.
    """
    from ema_keras.export import export_tflite, tflite_interpreter

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    # The timed image is among the calibration images, so int8 sees no value
    # outside its calibrated ranges.
    calibration = [pixels[0]] + demo_images(4, size, seed=2000)
    path = os.path.join(work_dir, f"{preset}_{size}_{quantization}.tflite")
    note = None
    if not os.path.exists(path):
        start = time.perf_counter()
        export_tflite(
            model,
            path,
            quantization=quantization,
            image_size=(size, size),
            representative_images=calibration if quantization == "int8" else None,
        )
        note = (
            f"tflite_{quantization}: exported in {time.perf_counter() - start:.0f} s, "
            f"{os.path.getsize(path) / 2**20:.1f} MiB"
        )
    runner = tflite_interpreter(path, num_threads).get_signature_runner()
    pixels = pixels.astype(runner.get_input_details()["image"]["dtype"])
    return (lambda: runner(image=pixels)), note, runner


def torch_runners(depth, output_stride, num_classes, image, *, breakdown):
    """The PyTorch reference (whole model, and its trunk) on the same image, NCHW."""
    import torch

    from bench.torch_reference.emanet_torch import EMANet as TorchEMANet

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


def _timed(name, fn, repeats, results, notes):
    """Times `fn` after one untimed warm-up call; a failure becomes a note, not an exit."""
    start = time.perf_counter()
    try:
        timing = common.time_calls(fn, warmup=1, repeats=repeats)
    except Exception as error:  # noqa: BLE001  (one failing runtime must not hide the others)
        notes.append(f"{name} FAILED: {type(error).__name__}: {str(error)[:300]}")
        print(f"    {name}: failed ({type(error).__name__})", flush=True)
        return None
    results[name] = {"best": timing.best, "median": timing.median}
    print(
        f"    {name}: {1000 * timing.best:.0f} ms/image "
        f"({time.perf_counter() - start:.0f} s with warm-up)",
        flush=True,
    )
    return timing


def tensorflow_runtimes(
    preset, *, size, runtimes, repeats, threads, breakdown, work_dir, agreement_images=0
):
    """Keras and TFLite timings of one preset (and their argmax agreement), in this process."""
    common.set_threads(threads)
    import keras

    from ema_keras import cost
    from ema_keras.models import EMANetImageSegmenter

    keras.utils.set_random_seed(0)
    model = EMANetImageSegmenter.from_preset(preset, seed=0)
    model_cost = cost.model_cost(model, input_size=(size, size))
    image = np.random.default_rng(0).normal(size=(1, size, size, 3)).astype(np.float32)
    runners, keras_trunk, graphs = keras_runners(
        model, image, breakdown=breakdown, runtimes=runtimes + ["keras_graph"]
    )
    images = demo_images(agreement_images, size)
    labels = {}
    if images:
        labels["keras_graph"] = keras_labels(graphs["keras_graph"], model, images)
    results, notes, trunk = {}, [], {}
    for runtime in runtimes:
        if runtime in KERAS_RUNTIMES:
            _timed(runtime, runners[runtime], repeats, results, notes)
            if runtime == "keras_graph" and keras_trunk is not None:
                trunk[runtime] = common.time_calls(keras_trunk, repeats=repeats).best
            if images and runtime in graphs and runtime != "keras_graph":
                labels[runtime] = keras_labels(graphs[runtime], model, images)
        elif runtime in TFLITE_RUNTIMES:
            try:
                quantization = runtime[len("tflite_") :]
                fn, note, runner = tflite_runner(
                    model, preset, quantization, size, work_dir, threads or common.cpu_count()
                )
            except Exception as error:  # noqa: BLE001
                notes.append(f"{runtime} export FAILED: {type(error).__name__}: {error}"[:400])
                continue
            notes += [note] if note else []
            _timed(runtime, fn, repeats, results, notes)
            if images:
                labels[runtime] = tflite_labels(runner, images)
    reference = labels.get("keras_graph")
    agreements = {name: agreement(found, reference) for name, found in labels.items()}
    return {
        "results": results,
        "trunk": trunk,
        "notes": notes,
        "flops": model_cost["total"].flops,
        "backbone_flops": model_cost["backbone"].flops,
        "params": model_cost["total"].params,
        "agreement": agreements,
    }


def torch_runtime(preset, *, size, repeats, threads, breakdown):
    """The PyTorch reference's timings of one preset, in this (fresh) process."""
    common.set_threads(threads, frameworks=("torch",))
    image = np.random.default_rng(0).normal(size=(1, size, size, 3)).astype(np.float32)
    whole, trunk_fn, params = torch_runners(
        *preset_architecture(preset), image, breakdown=breakdown
    )
    results, notes, trunk = {}, [], {}
    _timed("torch", whole, repeats, results, notes)
    if trunk_fn is not None:
        trunk["torch"] = common.time_calls(trunk_fn, repeats=repeats).best
    return {"results": results, "trunk": trunk, "notes": notes, "params": params}


HEAD_PARTS = (
    "3x3 conv-BN-ReLU to 512 (pre_ema)",
    "EMA unit",
    "3x3 conv-BN-ReLU to 256 (post_ema)",
    "1x1 classifier",
    "bilinear resize to the image",
)


def feature_size(size, output_stride):
    """Side of the backbone's output for a size x size image ("same" padding, stride 2 steps)."""
    for _ in range(output_stride.bit_length() - 1):
        size = -(-size // 2)
    return size


def keras_head_parts(preset, *, size, repeats, threads):
    """Best seconds of each head part of the Keras model on its feature map, in this process."""
    common.set_threads(threads)
    import keras
    import tensorflow as tf

    from ema_keras.models import EMANetImageSegmenter
    from ema_keras.models.segmenter_parts import find_layer

    keras.utils.set_random_seed(0)
    model = EMANetImageSegmenter.from_preset(preset, seed=0)
    side = feature_size(size, model.backbone.output_stride)

    def layer(name):
        return find_layer(model, name)[0]

    def conv_bn_relu(name):
        return lambda x: layer(f"{name}_relu")(layer(f"{name}_bn")(layer(f"{name}_conv")(x)))

    def random(channels):
        return tf.random.stateless_normal((1, side, side, channels), seed=(0, channels))

    image = tf.zeros((1, size, size, 3))
    heads = model.backbone.head_channels
    parts = {
        HEAD_PARTS[0]: (
            conv_bn_relu("pre_ema"), random(model.image_encoder.output["P5"].shape[-1])
        ),
        HEAD_PARTS[1]: (lambda x: layer("ema_unit")(x, training=False), random(heads)),
        HEAD_PARTS[2]: (conv_bn_relu("post_ema"), random(heads)),
        HEAD_PARTS[3]: (layer("classifier_conv"), random(model.backbone.classifier_channels)),
        HEAD_PARTS[4]: (lambda x: layer("logits")([x, image]), random(model.num_classes)),
    }
    seconds = {}
    for name, (fn, x) in parts.items():
        graph = tf.function(fn)
        seconds[name] = common.time_calls(lambda: graph(x).numpy(), repeats=repeats).best
    return seconds


def torch_head_parts(preset, *, size, repeats, threads):
    """The same parts of the PyTorch reference's head, in this process."""
    common.set_threads(threads, frameworks=("torch",))
    import torch
    import torch.nn.functional as F

    from bench.torch_reference.emanet_torch import EMANet as TorchEMANet

    depth, output_stride, num_classes = preset_architecture(preset)
    torch.manual_seed(0)
    net = TorchEMANet(num_classes=num_classes, depth=depth, output_stride=output_stride).eval()
    side = feature_size(size, output_stride)

    def random(channels):
        return torch.randn(1, channels, side, side)

    def resize(x):
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)

    parts = {
        HEAD_PARTS[0]: (net.fc0, random(2048)),
        HEAD_PARTS[1]: (net.emau, random(512)),
        HEAD_PARTS[2]: (net.fc1, random(512)),
        HEAD_PARTS[3]: (net.fc2, random(256)),
        HEAD_PARTS[4]: (resize, random(num_classes)),
    }
    seconds = {}
    with torch.inference_mode():
        for name, (fn, x) in parts.items():
            seconds[name] = common.time_calls(lambda: fn(x), repeats=repeats).best
    return seconds


def matmul_limit(size, threads):
    """{framework: GFLOP/s} and the highest, at this thread count, in this (fresh) process."""
    common.set_threads(threads, frameworks=("tensorflow", "torch"))
    return matmul_peak.practical_peak(size, repeats=10)


def define_flags():
    """Command-line flags (defined only when run as a script)."""
    flags.DEFINE_bool("quick", False, "emanet_resnet50_os16 at 321x321, threads 1 and all.")
    flags.DEFINE_list("presets", None, f"EMANet presets (default: {', '.join(PRESETS)}).")
    flags.DEFINE_list("runtimes", list(RUNTIMES), "Which runtimes to time.")
    flags.DEFINE_integer("image_size", None, "Square input size (default 513; 321 with --quick).")
    flags.DEFINE_integer("repeats", None, "Timed calls per runtime (default 3 quick, 5 full).")
    flags.DEFINE_list("threads", None, "Thread counts (default: all cores; also 1 with --quick).")
    flags.DEFINE_integer("matmul_size", 2048, "n of the n x n x n matmul that sets the peak.")
    flags.DEFINE_bool("breakdown", True, "Also time the backbone alone (Keras graph, PyTorch).")
    flags.DEFINE_integer(
        "agreement_images",
        4,
        "Demo-style images on which each runtime's argmax is compared with float32 Keras "
        "(at the first thread count; 0: none).",
        lower_bound=0,
    )


def main(argv):
    del argv
    common.quiet_logs()
    quick = FLAGS.quick
    presets = FLAGS.presets or (["emanet_resnet50_os16"] if quick else list(PRESETS))
    size = FLAGS.image_size or (321 if quick else 513)
    repeats = FLAGS.repeats or (3 if quick else 5)
    cores = common.cpu_count()
    default_threads = sorted({1, cores}) if quick else [cores]
    threads_list = [int(t) for t in FLAGS.threads] if FLAGS.threads else default_threads
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
                "threads": ",".join(map(str, threads_list)),
                "repeats": repeats,
                "runtimes": ",".join(runtimes),
                "weights": "random",
            },
        )
    )
    work_dir = tempfile.mkdtemp(prefix="model_inference_")
    tf_runtimes = [r for r in runtimes if r != "torch"]
    peaks, measured = {}, {}
    for threads in threads_list:
        rates, peaks[threads] = common.run_isolated(matmul_limit, FLAGS.matmul_size, threads)
        print(
            f"matmul peak, {threads} thread(s), n={FLAGS.matmul_size}: "
            + ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items())
            + " GFLOP/s",
            flush=True,
        )
        for preset in presets:
            print(f"  {preset}, {threads} thread(s):", flush=True)
            settings = dict(size=size, repeats=repeats, threads=threads, breakdown=FLAGS.breakdown)
            part_settings = dict(size=size, repeats=repeats, threads=threads)
            # Agreement does not depend on the thread count: measured at the first one.
            checked = FLAGS.agreement_images if threads == threads_list[0] else 0
            merged = common.run_isolated(
                tensorflow_runtimes,
                preset,
                runtimes=tf_runtimes,
                work_dir=work_dir,
                agreement_images=checked,
                **settings,
            )
            if "torch" in runtimes:
                torch_result = common.run_isolated(torch_runtime, preset, **settings)
                merged["results"].update(torch_result["results"])
                merged["trunk"].update(torch_result["trunk"])
                merged["notes"] += torch_result["notes"]
                merged["notes"].append(
                    f"parameters: Keras {merged['params'] / 1e6:.2f} M (PyTorch-style count), "
                    f"PyTorch reference {torch_result['params'] / 1e6:.2f} M"
                )
            if FLAGS.breakdown and "torch" in runtimes:
                merged["head_parts"] = {
                    "keras": common.run_isolated(keras_head_parts, preset, **part_settings),
                    "torch": common.run_isolated(torch_head_parts, preset, **part_settings),
                }
            measured[preset, threads] = merged
    print_tables(measured, peaks)
    print(f"- TFLite files in {work_dir}")


def _percent(share):
    return None if share is None else 100 * share


def print_tables(measured, peaks):
    rows, breakdown_rows, notes = [], [], []
    agreements = {}  # preset -> runtime -> share, from the thread count that measured it
    for (preset, _), merged in measured.items():
        for runtime, share in merged.get("agreement", {}).items():
            agreements.setdefault(preset, {}).setdefault(runtime, share)
    for (preset, threads), merged in measured.items():
        results, flops = merged["results"], merged["flops"]
        torch_best = results.get("torch", {}).get("best")
        for runtime, timing in results.items():
            gflops = flops / timing["best"] / 1e9
            # int8 and bfloat16 do not run float32 arithmetic: no float32 ceiling to compare with.
            low_precision = runtime in ("tflite_int8", "keras_bfloat16")
            fraction = None if low_precision else 100 * gflops / peaks[threads]
            rows.append(
                [
                    preset,
                    threads,
                    runtime,
                    common.fmt(flops / 1e9, 1),
                    common.fmt(1000 * timing["best"], 0),
                    common.fmt(1000 * timing["median"], 0),
                    common.fmt(1 / timing["best"], 2),
                    common.fmt(torch_best / timing["best"] if torch_best else None, 2),
                    common.fmt(gflops, 1),
                    common.fmt(fraction, 0),
                    common.fmt(_percent(agreements.get(preset, {}).get(runtime)), 2),
                ]
            )
        for runtime, label in (("keras_graph", "Keras graph"), ("torch", "PyTorch")):
            if runtime not in merged["trunk"] or runtime not in results:
                continue
            trunk = merged["trunk"][runtime]
            head = results[runtime]["best"] - trunk
            head_flops = flops - merged["backbone_flops"]
            breakdown_rows.append(
                [
                    preset,
                    threads,
                    label,
                    common.fmt(1000 * trunk, 0),
                    common.fmt(merged["backbone_flops"] / trunk / 1e9, 1),
                    common.fmt(1000 * head, 0),
                    common.fmt(head_flops / head / 1e9 if head > 0 else None, 1),
                ]
            )
        notes += [f"{preset}, {threads} thread(s): {note}" for note in merged["notes"]]
        for fast, slow in (("keras_xla", "keras_graph"), ("keras_graph", "keras_eager")):
            if fast in results and slow in results:
                ratio = results[slow]["best"] / results[fast]["best"]
                notes.append(f"{preset}, {threads} thread(s): {fast} / {slow} rate: {ratio:.2f}x")
    print()
    print(
        common.markdown_table(
            [
                "model",
                "threads",
                "runtime",
                "GFLOPs/image",
                "ms/image (best)",
                "ms (median)",
                "images/s",
                "vs PyTorch (x)",
                "GFLOP/s",
                "% of matmul peak",
                "argmax = float32 (%)",
            ],
            rows,
        )
    )
    if breakdown_rows:
        print("\nwhere the time goes (head = whole model - backbone):\n")
        print(
            common.markdown_table(
                [
                    "model",
                    "threads",
                    "runtime",
                    "backbone ms",
                    "backbone GFLOP/s",
                    "head ms",
                    "head GFLOP/s",
                ],
                breakdown_rows,
            )
        )
    part_rows = []
    for (preset, threads), merged in measured.items():
        parts = merged.get("head_parts")
        if not parts:
            continue
        for name in HEAD_PARTS:
            ours, theirs = parts["keras"][name], parts["torch"][name]
            part_rows.append(
                [
                    preset,
                    threads,
                    name,
                    common.fmt(1000 * ours, 1),
                    common.fmt(1000 * theirs, 1),
                    common.fmt(theirs / ours, 2),
                ]
            )
    if part_rows:
        print("\nthe head, part by part, on its feature map (graph mode / inference mode):\n")
        print(
            common.markdown_table(
                ["model", "threads", "part", "Keras ms", "PyTorch ms", "PyTorch / Keras time"],
                part_rows,
            )
        )
    peak_list = ", ".join(f"{threads} thread(s) {peak:.1f}" for threads, peak in peaks.items())
    print(f"\nmatmul peak (GFLOP/s): {peak_list}")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
