"""Converts official EMANet / ImageNet ResNet PyTorch files to Keras files.

    # The authors' trained VOC model (ResNet-101, output stride 8):
    python export/convert_pytorch.py --input final.pth --output emanet_r101_voc.keras

    # ImageNet backbones for fine-tuning (deep stem, or torchvision's):
    python export/convert_pytorch.py --input resnet101.pth --output resnet101_deep.keras
    python export/convert_pytorch.py --input resnet50-0676ba61.pth --output resnet50_tv.keras

The kind of file is read from its keys unless --kind is given. Needs torch
(`pip install 'ema-keras[convert]'`); the written files load without it.
"""

from absl import app, flags, logging

from ema_keras import cli, weights

flags.DEFINE_string("input", None, "PyTorch file (.pth).", required=True)
flags.DEFINE_string(
    "output", None, "Output file: .keras (whole model) or .weights.h5.", required=True
)
flags.DEFINE_enum("kind", None, list(weights.KINDS), "File kind; unset = detected.")
flags.DEFINE_string("preset", None, "EMANet preset to build (official checkpoints only).")
flags.DEFINE_integer("depth", None, "Expected ResNet depth; unset = the file's.")
flags.DEFINE_integer("output_stride", None, "8 or 16; unset = the preset's, or 8.")
flags.DEFINE_integer("num_classes", None, "Expected class count (official checkpoints).")
flags.DEFINE_integer("num_iterations", 3, "EM iterations T (official checkpoints).")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    kwargs = {"depth": FLAGS.depth}
    if FLAGS.output_stride is not None:
        kwargs["output_stride"] = FLAGS.output_stride
    kind = FLAGS.kind
    if kind is None:
        kind = weights.detect_kind(FLAGS.input)
    if kind == "official":
        kwargs.update(
            preset=FLAGS.preset, num_classes=FLAGS.num_classes, num_iterations=FLAGS.num_iterations
        )
    elif FLAGS.preset or FLAGS.num_classes:
        raise app.UsageError("--preset and --num_classes apply to official checkpoints only.")
    model = weights.convert_checkpoint(FLAGS.input, FLAGS.output, kind=kind, **kwargs)
    logging.info("Wrote %s (%s, %d weights).", FLAGS.output, model.name, model.count_params())


if __name__ == "__main__":
    cli.run(main)
