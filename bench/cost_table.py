"""Prints the paper-style cost table (parameters, GMACs) of EMANet heads.

    python -m bench.cost_table --quick          # ResNet-50/101, output stride 8
    python -m bench.cost_table                  # also output stride 16 and ResNet-152

Counts are analytic, from the built layers (no forward pass); see
`ema_keras.cost` for what is counted.
"""

from absl import app, flags

from ema_keras import cost

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Only ResNet-50/101 at output stride 8.")
flags.DEFINE_integer("input_size", 513, "Square input size in pixels.")
flags.DEFINE_enum("stem", "deep", ["deep", "standard"], "Backbone stem.")


def main(argv):
    del argv
    configurations = [(50, 8), (101, 8)]
    if not FLAGS.quick:
        configurations += [(50, 16), (101, 16), (152, 8)]
    size = (FLAGS.input_size, FLAGS.input_size)
    for depth, output_stride in configurations:
        rows = cost.cost_table(depth, output_stride=output_stride, input_size=size, stem=FLAGS.stem)
        print(f"\nResNet-{depth}, output stride {output_stride}, {size[0]}x{size[1]} input:\n")
        print(cost.format_table(rows))


if __name__ == "__main__":
    app.run(main)
