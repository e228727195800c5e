"""Int8 agreement with float after post-training quantization and after QAT, on the demo set.

    python -m bench.qat_table --model runs/mobile/best.keras --data_dir runs/mobile/demo_data
    python -m bench.qat_table             # trains the Small preset itself first (plain fit)

For a trained model (the `demo_mobile` recipe's `best.keras`, or without
--model the Small preset trained here from scratch by `fit` with the
`demo_mobile` recipe's optimizer and data: SGD 0.05 poly, batch 8, crop 96,
scales 0.75-1.25, --train_steps steps, no checkpoint selection): the
post-training full-integer file (the CLI's: first --num_calibration training
images) and, for each of
--qat_steps, a QAT fine-tune (`ema_keras.quantization`, batch 8, crop 96,
SGD --qat_learning_rate) and its int8 file. On every validation image, on
the export's canvas: pixel argmax agreement with the float Keras model,
mIoU against the ground truth, and the file's median latency (1 thread,
XNNPACK); each file also against the Keras model it was converted from. The
control row fine-tunes the BatchNorm-folded float model for the same steps
and learning rate (no rounding) and quantizes it after training: what QAT
gains over the extra training alone. The QAT Keras model is scored too, with its EMA unit quantized
and with the EM iterations in float (where the int8 error sits).
"""

import os
import statistics
import tempfile
import time

import numpy as np
from absl import app, flags

from bench.common import header, markdown_table, quiet_logs

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Trained .keras file (default: train the Small preset here).")
flags.DEFINE_string("data_dir", None, "Demo VOC2012 folder (default: a fresh demo set).")
flags.DEFINE_integer("train_steps", 900, "Float training steps without --model.")
flags.DEFINE_list("qat_steps", ["100", "300"], "QAT fine-tune lengths to measure.")
flags.DEFINE_float("qat_learning_rate", 1e-3, "QAT SGD learning rate.")
flags.DEFINE_integer("num_calibration", 32, "Calibration images (post-training and QAT files).")
flags.DEFINE_integer("image_size", 128, "Square export canvas.")
flags.DEFINE_integer("seed", 0, "Seed of training and the data order.")

NUM_CLASSES = 21


def confusion(labels, truth):
    truth, labels = truth.astype(np.int64), labels.astype(np.int64)  # uint8 PNG labels
    valid = truth != 255
    return np.bincount(
        truth[valid] * NUM_CLASSES + labels[valid], minlength=NUM_CLASSES**2
    ).reshape(NUM_CLASSES, NUM_CLASSES)


def mean_iou(matrix):
    intersection = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present]))


class Scores:
    """Agreement with float labels and mIoU against the truth, summed over images."""

    def __init__(self):
        self.agreeing, self.pixels, self.matrix, self.latencies = 0, 0, 0, []

    def add(self, labels, float_labels, truth):
        self.agreeing += int(np.sum(labels == float_labels))
        self.pixels += labels.size
        self.matrix = self.matrix + confusion(labels, truth)

    def row(self, name, own_agreement=None):
        latency = f"{statistics.median(self.latencies):.1f}" if self.latencies else "-"
        own = "-" if own_agreement is None else f"{own_agreement:.3%}"
        return [name, f"{self.agreeing / self.pixels:.3%}", own, f"{mean_iou(self.matrix):.2%}",
                latency]  # fmt: skip


def file_labels(runner, canvas, scores):
    start = time.perf_counter()
    logits = runner(image=np.round(canvas).astype(np.uint8))["logits"]
    scores.latencies.append((time.perf_counter() - start) * 1000)
    return logits[0].argmax(-1)


def train_float(root, dataset):
    import keras

    from ema_keras.losses import MaskedSparseCrossEntropy
    from ema_keras.models import EMANetImageSegmenter
    from ema_keras.schedules import PolyDecay

    keras.utils.set_random_seed(FLAGS.seed)
    model = EMANetImageSegmenter.from_preset("emanet_mobilenetv3_small_voc", seed=FLAGS.seed)
    # The demo_mobile recipe's optimizer: SGD, lr 0.05 poly-decayed to 0, 20 warm-up steps.
    schedule = PolyDecay(0.05, FLAGS.train_steps, power=0.9, warmup_steps=20)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                  loss=MaskedSparseCrossEntropy())  # fmt: skip
    model.fit(dataset, steps_per_epoch=FLAGS.train_steps, epochs=1, verbose=0)
    return model


def main(argv):
    del argv
    quiet_logs()
    import keras

    from ema_keras.data import examples_dataset, read_voc_split, train_dataset, write_demo_dataset
    from ema_keras.export import export_tflite, load_images, tflite_interpreter
    from ema_keras.export.preprocessing import canvas_numpy
    from ema_keras.inference.folding import fold_batch_norm
    from ema_keras.losses import MaskedSparseCrossEntropy
    from ema_keras.quantization import QuantizedEMAUnit, fine_tune, quantization_aware_model

    workdir = tempfile.mkdtemp(prefix="qat_table_")
    root = FLAGS.data_dir or write_demo_dataset(os.path.join(workdir, "demo"), seed=FLAGS.seed)
    dataset = train_dataset(
        read_voc_split(root, "train"), batch_size=8, crop_size=96, scales=(0.75, 1.0, 1.25),
        seed=FLAGS.seed, cache=True, num_classes=NUM_CLASSES,
    )  # fmt: skip
    started = time.time()
    model = keras.models.load_model(FLAGS.model) if FLAGS.model else train_float(root, dataset)
    train_seconds = time.time() - started
    size = (FLAGS.image_size, FLAGS.image_size)
    calibration = load_images(data_dir=root, split="train", limit=FLAGS.num_calibration)
    examples = [(e["image"].numpy(), e["label"].numpy())
                for e in examples_dataset(read_voc_split(root, "val"))]  # fmt: skip
    canvases = []
    for image, label in examples:
        canvas, (height, width) = canvas_numpy(image, size)
        canvases.append((np.round(canvas), (height, width), label[..., 0]
                         if label.ndim == 3 else label))  # fmt: skip

    def keras_labels(net, canvas):
        return np.asarray(net(canvas, training=False))[0].argmax(-1)

    float_labels = [keras_labels(model, canvas) for canvas, _, _ in canvases]

    def region(array, hw):
        return array[: hw[0], : hw[1]]

    def score_keras(net, name):
        scores = Scores()
        for (canvas, hw, truth), reference in zip(canvases, float_labels):
            scores.add(region(keras_labels(net, canvas), hw), region(reference, hw), truth)
        return scores.row(name)

    def score_file(path, name, source):
        """The file against float (and the truth), and against the Keras model it came from."""
        runner = tflite_interpreter(path, num_threads=1).get_signature_runner()
        scores, own = Scores(), Scores()
        for (canvas, hw, truth), reference in zip(canvases, float_labels):
            labels = file_labels(runner, canvas, scores)
            scores.add(region(labels, hw), region(reference, hw), truth)
            own.add(region(labels, hw), region(keras_labels(source, canvas), hw), truth)
        return scores.row(name, own.agreeing / own.pixels)

    def float_fine_tune(steps):
        """The control: the same steps on the BatchNorm-folded float model, no rounding."""
        folded = fold_batch_norm(model)
        folded.compile(optimizer=keras.optimizers.SGD(FLAGS.qat_learning_rate, momentum=0.9),
                       loss=MaskedSparseCrossEntropy())  # fmt: skip
        folded.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        return folded

    rows = [score_keras(model, "float32 Keras")]
    ptq_path = os.path.join(workdir, "ptq.tflite")
    export_tflite(model, ptq_path, quantization="int8", image_size=size,
                  representative_images=calibration)  # fmt: skip
    rows.append(score_file(ptq_path, "post-training int8 file", model))
    for steps in (int(s) for s in FLAGS.qat_steps):
        qat = quantization_aware_model(model)
        start = time.time()
        fine_tune(qat, dataset, steps, learning_rate=FLAGS.qat_learning_rate)
        print(f"QAT {steps} steps: {time.time() - start:.0f} s")
        rows.append(score_keras(qat, f"QAT {steps} steps, Keras (fake-quant)"))
        for layer in qat.layers:
            if isinstance(layer, QuantizedEMAUnit):
                layer.quantize_attention = False
        rows.append(score_keras(qat, f"QAT {steps} steps, Keras, EM iterations in float"))
        for layer in qat.layers:
            if isinstance(layer, QuantizedEMAUnit):
                layer.quantize_attention = True
        path = os.path.join(workdir, f"qat_{steps}.tflite")
        export_tflite(qat, path, quantization="int8", image_size=size,
                      representative_images=calibration)  # fmt: skip
        rows.append(score_file(path, f"QAT {steps} steps, int8 file", qat))
        control = float_fine_tune(steps)
        rows.append(score_keras(control, f"float fine-tune {steps} steps (BN folded), Keras"))
        path = os.path.join(workdir, f"control_{steps}.tflite")
        export_tflite(control, path, quantization="int8", image_size=size,
                      representative_images=calibration)  # fmt: skip
        rows.append(score_file(path, f"float fine-tune {steps} steps, post-training int8", control))
    settings = {
        "model": FLAGS.model
        or f"Small preset, fit {FLAGS.train_steps} steps ({train_seconds:.0f} s)",
        "val images": len(canvases), "canvas": FLAGS.image_size,
        "calibration": FLAGS.num_calibration, "qat_lr": FLAGS.qat_learning_rate,
    }  # fmt: skip
    print(header("Int8 after post-training quantization and after QAT", settings))
    print(markdown_table(
        ["model", "agreement with float", "agreement with its Keras model", "mIoU (canvas)",
         "ms/image (1 thread)"], rows
    ))  # fmt: skip


if __name__ == "__main__":
    app.run(main)
