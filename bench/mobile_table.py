"""Parameters, GMACs and full-integer int8 TFLite latency of the mobile presets and EMANet-R50.

    python bench/mobile_table.py --quick    # 2 calibration images, 5 timed runs
    python bench/mobile_table.py            # 8 calibration images, 20 timed runs

For `emanet_mobilenetv3_large_voc`, `emanet_mobilenetv3_small_voc` and
`emanet_resnet50_os16` (EMANet-R50, output stride 16): parameters (PyTorch's
count: no BatchNorm statistics, no EMA bases) and MACs at 513x513 from
`ema_keras.cost`, then the median latency of the full-integer int8 TFLite
file (uint8 pixels in, int8 logits out, builtin ops only, XNNPACK) at
513x513 and 257x257 with 1 and 2 threads, all in the same process.

Weights are random; BatchNorm statistics are estimated on the calibration
images (smooth random images) so that activations have a trained network's
scale. Latencies are those of the real graphs; the machine's cores are
shared, so expect +-20% between runs.
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_name, quiet_logs  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "2 calibration images and 5 timed runs per configuration.")
flags.DEFINE_list(
    "presets",
    ["emanet_mobilenetv3_large_voc", "emanet_mobilenetv3_small_voc", "emanet_resnet50_os16"],
    "Presets to measure.",
)
flags.DEFINE_list("sizes", ["513", "257"], "Square input sizes of the TFLite files.")
flags.DEFINE_list("threads", ["1", "2"], "TFLite thread counts.")


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


def int8_latency_ms(path, threads, runs):
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


def main(argv):
    del argv
    quiet_logs()
    from ema_keras import cost
    from ema_keras.export import export_tflite

    calibration = 2 if FLAGS.quick else 8
    runs = 5 if FLAGS.quick else 20
    sizes = [int(size) for size in FLAGS.sizes]
    threads = [int(count) for count in FLAGS.threads]
    folder = tempfile.mkdtemp(prefix="mobile_table_")
    columns = [f"{size} px, {count} thr (ms)" for size in sizes for count in threads]
    rows = []
    for preset in FLAGS.presets:
        cells, params, macs, megabytes = [], None, None, None
        for size in sizes:
            images = smooth_images(calibration, size)
            model = build(preset, size, images)
            if size == 513 or params is None:
                counted = cost.model_cost(model)["total"]
                params, macs = counted.params, counted.macs
            path = os.path.join(folder, f"{preset}_{size}.tflite")
            start = time.perf_counter()
            export_tflite(
                model, path, quantization="int8", image_size=(size, size),
                representative_images=images,
            )  # fmt: skip
            print(f"{preset} {size}: int8 export {time.perf_counter() - start:.0f} s", flush=True)
            megabytes = os.path.getsize(path) / 1e6 if size == 513 else megabytes
            cells += [int8_latency_ms(path, count, runs) for count in threads]
        rows.append((preset, params, macs, megabytes, cells))

    print(
        f"\nFull-integer int8 TFLite (XNNPACK), {cpu_name()}, random weights, median of {runs}:\n"
    )
    print("| preset | params (M) | GMACs at 513 | int8 MB | " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(columns))
    for preset, params, macs, megabytes, cells in rows:
        size_cell = f"{megabytes:.2f}" if megabytes is not None else "-"
        print(
            f"| {preset} | {params / 1e6:.2f} | {macs / 1e9:.2f} | {size_cell} | "
            + " | ".join(f"{cell:.1f}" for cell in cells)
            + " |"
        )


if __name__ == "__main__":
    app.run(main)
