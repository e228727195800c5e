"""Costs and CPU latencies of the mobile presets next to EMANet-R50: Keras, TFLite float32, int8.

    python -m bench.mobile_table --quick    # 2 calibration images, 5 timed runs
    python -m bench.mobile_table            # 8 calibration images, 20 timed runs

For `emanet_mobilenetv3_large_voc`, `emanet_mobilenetv3_small_voc` and
`emanet_resnet50_os16` (EMANet-R50, output stride 16): parameters (PyTorch's
count: no BatchNorm statistics, no EMA bases) and MACs at 513x513 from
`ema_keras.cost`, then the median latency at 513x513 and 257x257 with 1 and
2 threads of

- Keras float32 (`predict_on_batch`, TensorFlow with that many intra- and
  inter-op threads, each in a fresh process: TF fixes its pools at start),
- the float32 TFLite file (XNNPACK),
- the full-integer int8 TFLite file (uint8 pixels in, int8 logits out,
  builtin ops only, XNNPACK),

all in the same run. `--int8_only` presets (EMANet-R50 by default: the issue
compares the phones' models with its int8 file) get the int8 rows only.

Weights are random; BatchNorm statistics are estimated on the calibration
images (smooth random images) so that activations have a trained network's
scale. Latencies are those of the real graphs; the machine's cores are
shared, so expect +-20% between runs and compare rows of one run.
"""

import os
import statistics
import tempfile
import time

from absl import app, flags

from bench.common import header, markdown_table, quiet_logs, run_isolated, set_threads

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "2 calibration images and 5 timed runs per configuration.")
flags.DEFINE_list(
    "presets",
    ["emanet_mobilenetv3_large_voc", "emanet_mobilenetv3_small_voc", "emanet_resnet50_os16"],
    "Presets to measure.",
)
flags.DEFINE_list(
    "int8_only", ["emanet_resnet50_os16"], "Presets measured as int8 TFLite only."
)
flags.DEFINE_list("sizes", ["513", "257"], "Square input sizes.")
flags.DEFINE_list("threads", ["1", "2"], "Thread counts.")

FORMATS = ("Keras float32", "TFLite float32", "TFLite int8")


def smooth_images(count, size, seed=0):
    """uint8 (size, size, 3) images: upsampled 6x6 noise, a natural image's smoothness."""
    import keras
    import numpy as np

    rng = np.random.RandomState(seed)
    noise = rng.uniform(0, 255, (count, 6, 6, 3)).astype("float32")
    images = keras.ops.image.resize(noise, (size, size)).numpy()
    return list(np.clip(images, 0, 255).astype("uint8"))


def build(preset, size, images):
    """The preset at size x size, BatchNorm statistics from `images`."""
    import numpy as np

    from ema_keras.models import build_preset, model_inputs

    model = build_preset(preset, image_shape=(size, size, 3), seed=0)
    batch = model_inputs(model, np.stack(images).astype("float32"))
    for _ in range(10):
        for image in batch:
            model(image[None], training=True)
    return model


def keras_latency_ms(preset, size, threads, runs):
    """Median ms of one raw-pixel image through the preset's Keras model (run it isolated)."""
    set_threads(threads)
    quiet_logs()
    import numpy as np

    from ema_keras.models import build_preset, model_inputs

    model = build_preset(preset, image_shape=(size, size, 3), seed=0)
    pixels = np.random.RandomState(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    batch = model_inputs(model, pixels)
    model.predict_on_batch(batch)  # traces the predict function
    model.predict_on_batch(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def tflite_latency_ms(path, threads, runs):
    """Median ms of `invoke()` on random pixels of the file's input type."""
    import numpy as np

    from ema_keras.export.verification import tflite_interpreter

    interpreter = tflite_interpreter(path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    pixels = np.random.RandomState(0).randint(0, 256, detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], pixels)
    interpreter.invoke()
    interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


# Kept for callers of the int8-only version of this table.
int8_latency_ms = tflite_latency_ms


def measure_preset(preset, sizes, threads, calibration, runs, folder, formats):
    """({format: [ms per (size, threads)]}, params, MACs at 513 (or the first size), sizes MB)."""
    from ema_keras import cost
    from ema_keras.export import export_tflite

    cells = {name: [] for name in formats}
    params = macs = None
    megabytes = {}
    for size in sizes:
        if "Keras float32" in formats:
            cells["Keras float32"] += [
                run_isolated(keras_latency_ms, preset, size, count, runs) for count in threads
            ]
        images = smooth_images(calibration, size)
        model = build(preset, size, images)
        if size == 513 or params is None:
            counted = cost.model_cost(model)["total"]
            params, macs = counted.params, counted.macs
        for name, quantization in (("TFLite float32", "float32"), ("TFLite int8", "int8")):
            if name not in formats:
                continue
            path = os.path.join(folder, f"{preset}_{size}_{quantization}.tflite")
            start = time.perf_counter()
            export_tflite(
                model, path, quantization=quantization, image_size=(size, size),
                representative_images=images,
            )  # fmt: skip
            print(f"{preset} {size}: {name} export {time.perf_counter() - start:.0f} s", flush=True)
            if size == sizes[0]:
                megabytes[name] = os.path.getsize(path) / 1e6
            cells[name] += [tflite_latency_ms(path, count, runs) for count in threads]
    return cells, params, macs, megabytes


def main(argv):
    del argv
    quiet_logs()
    calibration = 2 if FLAGS.quick else 8
    runs = 5 if FLAGS.quick else 20
    sizes = [int(size) for size in FLAGS.sizes]
    threads = [int(count) for count in FLAGS.threads]
    folder = tempfile.mkdtemp(prefix="mobile_table_")
    settings = {"calibration images": calibration, "runs": runs, "weights": "random"}
    print(header("Mobile presets: costs and latency", settings))
    cost_rows, latency_rows = [], []
    for preset in FLAGS.presets:
        formats = ("TFLite int8",) if preset in FLAGS.int8_only else FORMATS
        cells, params, macs, megabytes = measure_preset(
            preset, sizes, threads, calibration, runs, folder, formats
        )
        cost_rows.append(
            [preset, f"{params / 1e6:.2f}", f"{macs / 1e9:.2f}"]
            + [f"{megabytes[name]:.2f}" if name in megabytes else "-" for name in FORMATS[1:]]
        )
        latency_rows += [
            [preset, name] + [f"{cell:.1f}" for cell in cells[name]] for name in formats
        ]
    print(f"\nCosts (GMACs and file sizes at {sizes[0]}x{sizes[0]}):\n")
    print(markdown_table(
        ["preset", "params (M)", "GMACs", "TFLite float32 MB", "TFLite int8 MB"], cost_rows
    ))  # fmt: skip
    print(f"\nLatency (ms, median of {runs}; load average now "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}):\n")  # fmt: skip
    columns = [f"{size} px, {count} thr" for size in sizes for count in threads]
    print(markdown_table(["preset", "runtime"] + columns, latency_rows))


if __name__ == "__main__":
    app.run(main)
