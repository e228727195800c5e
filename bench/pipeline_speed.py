"""Input pipeline throughput at 513x513 crops, next to the model's training step rate.

    python -m bench.pipeline_speed --quick
    python -m bench.pipeline_speed --num_images=200 --batches=40 --preset=emanet_resnet101_os8_voc

The data are the demo set drawn at VOC's image sizes (each side 375..500 px,
real JPEGs and palette PNGs) in a temporary folder. The pipeline runs the full
official augmentation (random scale 0.5..2.0, pad, crop, flip, normalise). The
model rate is measured with `train_on_batch` on random inputs of the same
shape, so the two numbers are independent; the goal is a pipeline faster than
the model on the same machine (ratio > 1), since tf.data overlaps the two.
"""

import os
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Short run: few images and batches, a small model.")
flags.DEFINE_integer("num_images", 64, "Images in the synthetic dataset.")
flags.DEFINE_integer("batch_size", 8, "Batch size of the pipeline and the model step.")
flags.DEFINE_integer("batches", 20, "Timed pipeline batches (after 2 warm-up batches).")
flags.DEFINE_integer("crop_size", 513, "Square crop size.")
flags.DEFINE_bool("cache", False, "Cache the read files in memory.")
flags.DEFINE_string(
    "preset", "emanet_resnet50_os16", "EMANet preset for the model step; '' to skip it."
)
flags.DEFINE_integer("model_steps", 3, "Timed training steps (after one warm-up step).")
flags.DEFINE_string("data_dir", None, "Where to draw the dataset (default: a temporary folder).")


def pipeline_rate(voc_root, *, batch_size, batches, crop_size, cache):
    from ema_keras.data import pipeline, voc

    examples = voc.read_voc_split(voc_root, "train")
    dataset = pipeline.train_dataset(
        examples, batch_size=batch_size, crop_size=crop_size, seed=0, cache=cache,
        num_classes=voc.NUM_CLASSES,
    )
    iterator = iter(dataset)
    for _ in range(2):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def model_rate(preset, *, batch_size, crop_size, steps):
    import keras
    import numpy as np

    try:
        from ema_keras.models import EMANetImageSegmenter
    except ImportError:
        return None
    model = EMANetImageSegmenter.from_preset(preset)
    model.compile(
        optimizer=keras.optimizers.SGD(0.009, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
    )
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch_size, crop_size, crop_size, 3)).astype("float32")
    labels = rng.integers(0, 21, size=(batch_size, crop_size, crop_size)).astype("int32")
    model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return steps * batch_size / (time.perf_counter() - start)


def main(argv):
    del argv
    from ema_keras.data.demo import write_demo_dataset

    num_images, batches, model_batch, steps = (
        FLAGS.num_images,
        FLAGS.batches,
        FLAGS.batch_size,
        FLAGS.model_steps,
    )
    if FLAGS.quick:
        num_images, batches, model_batch, steps = 16, 6, 2, 1
    data_dir = FLAGS.data_dir or os.path.join(tempfile.gettempdir(), "ema_keras_bench_voc")
    start = time.perf_counter()
    voc_root = write_demo_dataset(data_dir, num_train=num_images, num_val=1, image_size=(375, 500))
    print(
        f"dataset: {num_images} JPEGs of 375..500 px per side in {voc_root} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    rate = pipeline_rate(
        voc_root,
        batch_size=FLAGS.batch_size,
        batches=batches,
        crop_size=FLAGS.crop_size,
        cache=FLAGS.cache,
    )
    print(
        f"pipeline: {rate:.1f} examples/s at {FLAGS.crop_size}x{FLAGS.crop_size} crops "
        f"(batch {FLAGS.batch_size}, {cores} CPU cores, cache={FLAGS.cache})"
    )
    if not FLAGS.preset:
        return
    model = model_rate(FLAGS.preset, batch_size=model_batch, crop_size=FLAGS.crop_size, steps=steps)
    if model is None:
        print("model: ema_keras.models is not available; see bench/train_step for the model rate")
        return
    print(
        f"model:    {model:.2f} examples/s training {FLAGS.preset} "
        f"(batch {model_batch}) on this machine"
    )
    print(
        f"ratio pipeline / model: {rate / model:.1f}x "
        f"({'pipeline is not' if rate > model else 'pipeline IS'} the bottleneck)"
    )


if __name__ == "__main__":
    app.run(main)
