"""Distributed evaluation time: mirrored over 2 logical CPUs against one device, same images.

    python -m bench.distributed_evaluation --quick
    python -m bench.distributed_evaluation --num_images=24 --preset=emanet_mobilenetv3_small_voc

The split is the demo set drawn at sizes of its own (every side in --image_sizes), so
the replicas get whole images of different sizes, as in a real split. The model (random
weights, BatchNorm folded as eval_voc.py runs it) is scored by
`ema_keras.inference.evaluate` on one device and by `evaluate_on_replicas` under
`--strategy mirrored` (2 logical CPUs of one CPU: they share its cores, so expect no
gain; the point is that it runs and its confusion matrix is the one-device one, checked
here too). Prints a markdown table.
"""

import os
import tempfile

from absl import app, flags

from bench import common

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Short run: few, small images, one repetition.")
flags.DEFINE_integer("num_images", 12, "Validation images.")
flags.DEFINE_string("image_sizes", "160,240", "Smallest and largest image side, in pixels.")
flags.DEFINE_string("preset", "emanet_tiny_demo", "EMANet preset (random weights).")
flags.DEFINE_integer("repeats", 2, "Timed evaluations per configuration (after one warm-up).")


def main(argv):
    del argv
    common.quiet_logs()
    # Before TensorFlow runs an op: the CPU split into two logical devices.
    from ema_keras.inference.distributed_evaluation import tensorflow_replicas
    from ema_keras.training.strategy import make_strategy

    replicas = tensorflow_replicas(make_strategy("mirrored", num_cpu_replicas=2))
    import numpy as np

    from ema_keras.data.demo import write_demo_dataset
    from ema_keras.data.voc import read_voc_split
    from ema_keras.inference import evaluate, inference_model
    from ema_keras.inference.distributed_evaluation import evaluate_on_replicas
    from ema_keras.models import build_preset

    num_images, repeats = FLAGS.num_images, FLAGS.repeats
    sizes = tuple(int(side) for side in FLAGS.image_sizes.split(","))
    if FLAGS.quick:
        num_images, sizes, repeats = 5, (64, 96), 1
    data_dir = os.path.join(tempfile.gettempdir(), "ema_keras_bench_distributed_eval")
    voc_root = write_demo_dataset(data_dir, num_train=1, num_val=num_images, image_size=sizes)
    examples = read_voc_split(voc_root, "val")
    model = inference_model(build_preset(FLAGS.preset, num_classes=21, seed=0), "float32").model
    print(common.header(
        "Distributed evaluation on 2 logical CPUs against one device",
        {"preset": FLAGS.preset, "images": num_images, "sides": f"{sizes[0]}..{sizes[1]} px",
         "repeats": repeats},
    ))
    print("| protocol | one device (s) | mirrored, 2 logical CPUs (s) | ratio | same matrix |")
    print("|---|---|---|---|---|")
    for name, settings in (
        ("single scale", {}),
        ("multi-scale 0.75,1,1.25 + flip", {"scales": (0.75, 1.0, 1.25), "flip": True}),
    ):
        results = {}

        def one_device():
            results["one"] = evaluate(model, examples, num_classes=21, **settings)

        def mirrored():
            results["mirrored"] = evaluate_on_replicas(
                model, examples, replicas, num_classes=21, **settings
            )

        single = common.time_calls(one_device, warmup=1, repeats=repeats).median
        distributed = common.time_calls(mirrored, warmup=1, repeats=repeats).median
        same = np.array_equal(results["one"].confusion_matrix, results["mirrored"].confusion_matrix)
        print(f"| {name} | {single:.2f} | {distributed:.2f} | {single / distributed:.2f}x | "
              f"{'yes' if same else 'NO'} |")


if __name__ == "__main__":
    app.run(main)
