"""Segments images: VOC-palette label PNGs and colour overlays.

    python recipes/predict.py --model runs/demo/best.keras \
        --inputs photo.jpg,more_photos/ --output_dir predictions/
"""

import os

# TensorFlow's C++ start-up and converter notices are noise in a CLI; warnings stay.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import keras
import tensorflow as tf
from absl import app, flags

import ema_keras  # noqa: F401  (registers the custom classes for load_model)
from ema_keras.prediction import predict_files

flags.DEFINE_string("model", None, "A .keras model file.", required=True)
flags.DEFINE_list("inputs", None, "Image files and/or folders.", required=True)
flags.DEFINE_string("output_dir", None, "Where to write <name>.png and <name>_overlay.jpg.", required=True)
flags.DEFINE_list("scales", ["1.0"], "Inference scales.")
flags.DEFINE_boolean("flip", False, "Add horizontally flipped predictions.")
flags.DEFINE_integer("window", None, "Sliding-window size (default: whole image).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    tf.get_logger().setLevel("WARNING")
    model = keras.models.load_model(FLAGS.model, safe_mode=True)
    written = predict_files(
        model,
        FLAGS.inputs,
        FLAGS.output_dir,
        scales=tuple(float(s) for s in FLAGS.scales),
        flip=FLAGS.flip,
        window=FLAGS.window,
    )
    print(f"Wrote {len(written)} label maps (and overlays) to {FLAGS.output_dir}")


if __name__ == "__main__":
    app.run(main)
