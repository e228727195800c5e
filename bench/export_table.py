"""Size, latency and agreement with Keras of every export variant, as a markdown table.

    python -m bench.export_table --quick    # the tiny demo model, briefly trained: minutes
    python -m bench.export_table            # EMANet-R101 OS8 at 513x513, random weights

Each variant goes through `ema_keras.export.export_and_verify`: written,
run on demo-dataset images (drawn at VOC's image sizes for the full model)
and compared with the Keras model. Latency is the median per image on this
machine (TFLite through ai_edge_litert with XNNPACK, --num_threads threads;
Keras and the SavedModel through TensorFlow's default thread pools).
The full run's R101 has random weights, with its BatchNorm statistics
estimated on two demo images so that activations and logits have a trained
network's scale (a random network's statistics make them grow layer after
layer, up to 1e5, which no int8 or float16 range was meant for). Sizes and
latencies are then the real ones; agreement figures of an untrained network
say less than the quick run's trained model does.
"""

import json
import os
import tempfile
import time

from absl import app, flags

from bench.common import cpu_name

FLAGS = flags.FLAGS
flags.DEFINE_bool(
    "quick", False, "The tiny demo model (trained for --train_steps) instead of R101."
)
flags.DEFINE_string(
    "model", None, "A .keras file to benchmark instead (e.g. runs/demo/last.keras)."
)
flags.DEFINE_list("formats", None, "Variants (default: all of ema_keras.export.FORMATS).")
flags.DEFINE_integer("image_size", None, "Square TFLite input size (default: 128 quick, 513 full).")
flags.DEFINE_integer("num_images", None, "Verification images (default: 8 quick, 2 full).")
flags.DEFINE_integer("num_calibration_images", None, "int8 calibration images: 16 quick, 4 full.")
flags.DEFINE_integer("train_steps", 150, "Quick run: training steps of the tiny model.")
flags.DEFINE_integer("num_threads", None, "TFLite threads (default: all cores).")
flags.DEFINE_string("output_dir", None, "Where to write the files (default: a temporary folder).")


def train_tiny_model(voc_root, steps):
    """The demo preset after `steps` Adam steps on 64 px crops (enough to separate classes)."""
    import keras

    from ema_keras.data import read_voc_split, train_dataset
    from ema_keras.losses import MaskedSparseCrossEntropy
    from ema_keras.models import EMANetImageSegmenter

    keras.utils.set_random_seed(0)
    dataset = train_dataset(
        read_voc_split(voc_root, "train"), batch_size=8, crop_size=64, scales=(1.0,), seed=0,
        num_classes=21,
    )
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=MaskedSparseCrossEntropy())
    model.fit(dataset, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return model


def estimate_batch_norm_statistics(model, images, size):
    """Sets every BatchNorm's moving statistics to those of `images` on the canvas."""
    import keras
    import numpy as np

    from ema_keras import export
    from ema_keras.models import model_inputs

    layers = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # the moving statistics become this batch's
    canvases = [export.fit_to_canvas(image[None], size)[0].numpy() for image in images]
    model(model_inputs(model, np.concatenate(canvases)), training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def main(argv):
    del argv
    import tensorflow as tf

    from ema_keras import export
    from ema_keras.data import write_demo_dataset
    from ema_keras.models import EMANetImageSegmenter

    quick = FLAGS.quick
    size = FLAGS.image_size or (128 if quick else 513)
    num_images = FLAGS.num_images or (8 if quick else 2)
    num_calibration = FLAGS.num_calibration_images or (16 if quick else 4)
    work_dir = FLAGS.output_dir or tempfile.mkdtemp(prefix="export_table_")
    data_size = (64, 128) if quick else (375, 500)  # VOC images are at most 500 px a side
    voc_root = write_demo_dataset(
        os.path.join(work_dir, "data"),
        num_train=max(32, num_calibration),
        num_val=num_images,
        image_size=data_size,
        seed=0,
    )
    start = time.perf_counter()
    if FLAGS.model:
        model, name = export.load_model(FLAGS.model), FLAGS.model
    elif quick:
        model, name = train_tiny_model(voc_root, FLAGS.train_steps), "emanet_tiny_demo (trained)"
        name += f", {FLAGS.train_steps} steps"
    else:
        model = EMANetImageSegmenter.from_preset("emanet_resnet101_os8_voc", seed=0)
        name = "emanet_resnet101_os8_voc (random weights, BatchNorm statistics of 2 images)"
    elapsed = time.perf_counter() - start
    print(f"model ready in {elapsed:.0f} s: {name}, {model.count_params():,} parameters")

    images = export.load_images(data_dir=voc_root, split="val", limit=num_images)
    calibration = export.load_images(data_dir=voc_root, split="train", limit=num_calibration)
    if not quick and not FLAGS.model:
        estimate_batch_norm_statistics(model, calibration[:2], (size, size))
    start = time.perf_counter()
    reports = export.export_and_verify(
        model,
        os.path.join(work_dir, "export"),
        images=images,
        formats=FLAGS.formats or list(export.FORMATS),
        representative_images=calibration,
        image_size=(size, size),
        serving_size=(size, size),
        num_threads=FLAGS.num_threads,
        print_table=False,
        raise_on_failure=False,
    )
    with open(os.path.join(work_dir, "export", export.workflow.REPORT_FILE)) as handle:
        keras_latency = json.load(handle)["keras_latency_ms"]
    print(
        f"\n{name}; TFLite input {size}x{size}, SavedModel on a {size}x{size} canvas; "
        f"{len(images)} verification images ({data_size[0]}..{data_size[1]} px), "
        f"{len(calibration)} calibration images; {os.cpu_count()} CPU cores ({cpu_name()}), "
        f"TensorFlow {tf.__version__}; {time.perf_counter() - start:.0f} s in all.\n"
    )
    print(export.format_table(reports, reference_latency_ms=keras_latency))
    print(f"\nfiles in {os.path.join(work_dir, 'export')}")


if __name__ == "__main__":
    app.run(main)
