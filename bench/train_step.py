"""Training step rate and memory: float32, mixed precision and XLA, against PyTorch.

    python -m bench.train_step --quick   # R50 OS16, batch 2, 321x321 crops: minutes on a CPU
    python -m bench.train_step           # R101 OS8, batch 4, 513x513 crops (the paper's per-GPU)

Configurations, each in a fresh process:

- CPU: Keras float32, Keras float32 + XLA (`jit_compile=True`), PyTorch float32;
- GPU (when TensorFlow sees one): Keras float32, mixed_float16, mixed_float16
  + XLA, and PyTorch with AMP (`torch.autocast` float16 + `GradScaler`).

The Keras step is what `fit` runs for a batch: forward in training mode (the
EMA bases and BatchNorm statistics update), `MaskedSparseCrossEntropy`,
gradients, SGD with momentum (wrapped in a `LossScaleOptimizer` under
mixed_float16), in one `tf.function`. The PyTorch step is the reference
model (`bench/torch_reference`) with `CrossEntropyLoss(ignore_index=255)` and
`torch.optim.SGD`. Inputs are random images and labels of the crop size.

Each configuration runs at every thread count of `--threads` (on a CPU,
`--quick` uses 1 and all cores: PyTorch's OpenMP pool degrades badly when
other processes share its cores, TensorFlow's much less, so on a busy machine
the one-thread figures are the fair comparison).
Rates and ratios come from the fastest timed step (the median is shown too).
Memory is the peak that the training steps add over the built model and
optimizer state (momentum), first step included in both frameworks (it
allocates the gradients; TensorFlow keeps what a step frees for reuse, so a
later step alone would under-count): process RSS on CPU (with XLA that
includes compiling), the framework allocator's peak on GPU. "peak / batch"
still holds what does not grow with the batch (gradients, runtime buffers);
"per extra image" is (peak at the batch - peak at batch 1) / (batch - 1),
from a second run at batch 1 (`--marginal_memory`, on by default in full
runs): the activation memory one more image costs.
"""

import time

import numpy as np
from absl import app, flags

from bench import common

FLAGS = flags.FLAGS
CPU_CONFIGURATIONS = ("keras_float32", "keras_float32_xla", "torch_float32")
GPU_CONFIGURATIONS = (
    "keras_float32",
    "keras_mixed_float16",
    "keras_mixed_float16_xla",
    "torch_amp_float16",
)
LEARNING_RATE, MOMENTUM, NUM_CLASSES, IGNORE = 0.009, 0.9, 21, 255


def random_batch(batch, crop, seed=0):
    """Images (B, H, W, 3) float32 and labels (B, H, W) int32 with 10% ignored pixels."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch, crop, crop, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=(batch, crop, crop)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.1] = IGNORE
    return images, labels


def keras_step(preset, *, batch, crop, steps, mixed, xla, gpu, threads):
    """Seconds per step (best and median of the timed steps) and peak bytes, in this process."""
    common.set_threads(threads)
    import keras
    import tensorflow as tf

    from ema_keras.losses import MaskedSparseCrossEntropy
    from ema_keras.models import EMANetImageSegmenter

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    model = EMANetImageSegmenter.from_preset(preset, seed=0)
    loss_fn = MaskedSparseCrossEntropy()
    optimizer = keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM)
    if mixed:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    images, labels = (tf.constant(v) for v in random_batch(batch, crop))

    @tf.function(jit_compile=xla)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
            scaled = optimizer.scale_loss(loss) if mixed else loss
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    step.get_concrete_function(images, labels)  # trace outside the measurement
    with common.PeakMemory(gpu=gpu, framework="tf") as peak:
        timing = common.time_calls(lambda: step(images, labels).numpy(), warmup=1, repeats=steps)
    return {"seconds": timing.best, "median_seconds": timing.median, "peak_bytes": peak.bytes}


FIRST_STEP_CONFIGURATIONS = ("one_device", "mirrored", "mirrored_keras_sync_bn")


def keras_first_step(preset, *, configuration, batch, crop, threads):
    """Seconds from building the model to the end of `fit`'s first step, in this process.

    The trainer's own path (`build_model`, `compile_model`, `fit` with its
    `FirstStepTimer`) under `one_device` or `mirrored` (all GPUs, else two
    logical CPUs). `mirrored_keras_sync_bn` swaps our synchronised BatchNorm
    statistics for Keras' own (`BatchNormalization(synchronized=True)`), whose
    trace walks the other replica's graph at every layer.
    """
    common.set_threads(threads)
    import keras
    import tensorflow as tf

    from ema_keras.layers import SyncBatchNormalization
    from ema_keras.training import get_recipe, make_strategy, trainer
    from ema_keras.training.first_step import FirstStepTimer

    strategy_name = "one_device" if configuration == "one_device" else "mirrored"
    if configuration == "mirrored_keras_sync_bn":
        SyncBatchNormalization._moments = keras.layers.BatchNormalization._moments
    strategy = make_strategy(strategy_name)
    config = get_recipe("voc_official", preset=preset, strategy=strategy_name, steps=10)
    timer = FirstStepTimer()
    with strategy.scope():
        model = trainer.build_model(config)
        trainer.compile_model(model, config)
    data = tf.data.Dataset.from_tensors(random_batch(batch, crop)).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, callbacks=[timer])
    return {"seconds": timer.seconds, "replicas": strategy.num_replicas_in_sync}


def torch_step(preset, *, batch, crop, steps, amp, gpu, threads, architecture=None, warmup=1):
    """The PyTorch reference's training step: seconds per step and peak bytes.

    `architecture`: keyword arguments for the reference `EMANet` instead of the
    preset's (depth, output stride, classes), for presets it cannot read (the
    tiny demo, in smoke runs). `warmup`: untimed steps after the first one,
    which is inside the memory measurement either way.
    """
    common.set_threads(threads, frameworks=("torch",))
    import torch
    from torch import nn

    from bench.model_inference import preset_architecture
    from bench.torch_reference.emanet_torch import EMANet as TorchEMANet

    torch.manual_seed(0)
    device = "cuda" if gpu else "cpu"
    if architecture is None:
        depth, output_stride, num_classes = preset_architecture(preset)
        architecture = {"num_classes": num_classes, "depth": depth, "output_stride": output_stride}
    net = TorchEMANet(**architecture)
    net = net.to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images, labels = random_batch(batch, crop)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
    y = torch.from_numpy(labels).long().to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.float16, enabled=amp):
            loss = criterion(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if gpu:
            torch.cuda.synchronize()
        return loss.item()

    # As for Keras (whose optimizer is built before the measurement): the
    # momentum buffers exist before it, and the first step, which allocates
    # the gradients, is inside it. Zero buffers give the same first update
    # as SGD's lazy initialisation (a copy of the gradient).
    for parameter in net.parameters():
        optimizer.state[parameter]["momentum_buffer"] = torch.zeros_like(parameter)
    with common.PeakMemory(gpu=gpu, framework="torch") as peak:
        timing = common.time_calls(step, warmup=warmup, repeats=steps)
    return {"seconds": timing.best, "median_seconds": timing.median, "peak_bytes": peak.bytes}


def run_configuration(name, preset, *, batch, crop, steps, gpu, threads):
    """One configuration in a fresh process."""
    if name.startswith("keras_"):
        return common.run_isolated(
            keras_step,
            preset,
            batch=batch,
            crop=crop,
            steps=steps,
            mixed="mixed_float16" in name,
            xla=name.endswith("_xla"),
            gpu=gpu,
            threads=threads,
        )
    amp = name.endswith("amp_float16")
    return common.run_isolated(
        torch_step, preset, batch=batch, crop=crop, steps=steps, amp=amp, gpu=gpu, threads=threads
    )


def define_flags():
    """Command-line flags (defined only when run as a script)."""
    flags.DEFINE_bool("quick", False, "emanet_resnet50_os16, batch 2, 321x321 crops, 2 steps.")
    flags.DEFINE_string("preset", None, "EMANet preset (default emanet_resnet101_os8_voc).")
    flags.DEFINE_integer("batch_size", None, "Images per step (default 4; 2 with --quick).")
    flags.DEFINE_integer("crop_size", None, "Square crop (default 513; 321 with --quick).")
    flags.DEFINE_integer("steps", None, "Timed steps (default 5; 2 with --quick).")
    flags.DEFINE_list("configurations", None, "Subset of the configurations to run.")
    flags.DEFINE_bool(
        "marginal_memory",
        None,
        "Also run every configuration at batch 1, for the memory each further image adds "
        "(default: on, off with --quick).",
    )
    flags.DEFINE_list(
        "threads", None, "CPU thread counts (default: all cores; also 1 with --quick on a CPU)."
    )
    flags.DEFINE_bool("step_rates", True, "Time the training step configurations.")
    flags.DEFINE_list(
        "first_step",
        list(FIRST_STEP_CONFIGURATIONS),
        "Also time the wait for the first training step (build, trace, step) under these of "
        f"{FIRST_STEP_CONFIGURATIONS}; empty to skip.",
    )


def print_first_step_table(preset, batch, crop, threads):
    """Time to the first step per configuration, and its ratio to one_device's."""
    seconds = {}
    for name in FLAGS.first_step:
        if name not in FIRST_STEP_CONFIGURATIONS:
            raise app.UsageError(
                f"--first_step: {name!r} is not one of {FIRST_STEP_CONFIGURATIONS}."
            )
        result = common.run_isolated(
            keras_first_step, preset, configuration=name, batch=batch, crop=crop, threads=threads
        )
        seconds[name] = result["seconds"]
        print(f"  first step, {name} ({result['replicas']} replica(s)): {result['seconds']:.1f} s",
              flush=True)
    baseline = seconds.get("one_device")
    rows = [
        [name, common.fmt(value, 1), common.fmt(value / baseline if baseline else None, 2)]
        for name, value in seconds.items()
    ]
    print()
    print(common.markdown_table(["first step", "seconds", "vs one_device (x)"], rows))
    print()


def main(argv):
    del argv
    common.quiet_logs()
    quick = FLAGS.quick
    preset = FLAGS.preset or ("emanet_resnet50_os16" if quick else "emanet_resnet101_os8_voc")
    batch = FLAGS.batch_size or (2 if quick else 4)
    crop = FLAGS.crop_size or (321 if quick else 513)
    steps = FLAGS.steps or (2 if quick else 5)
    gpu = bool(common.gpu_names())
    available = GPU_CONFIGURATIONS if gpu else CPU_CONFIGURATIONS
    configurations = FLAGS.configurations or list(available)
    for name in configurations:
        if name not in available:
            raise app.UsageError(f"--configurations: {name!r} is not one of {available}.")
    cores = common.cpu_count()
    default_threads = sorted({1, cores}) if quick and not gpu else [cores]
    threads_list = [int(t) for t in FLAGS.threads] if FLAGS.threads else default_threads
    print(
        common.header(
            "EMANet training step",
            {
                "preset": preset,
                "batch": batch,
                "crop": f"{crop}x{crop}",
                "timed steps": steps,
                "threads": ",".join(map(str, threads_list)),
                "device": "GPU" if gpu else "CPU",
                "optimizer": f"SGD lr {LEARNING_RATE} momentum {MOMENTUM}",
            },
        )
    )
    if FLAGS.first_step:
        print_first_step_table(preset, batch, crop, threads_list[-1])
    if not FLAGS.step_rates:
        return
    results = {}
    for threads in threads_list:
        for name in configurations:
            start = time.perf_counter()
            results[name, threads] = result = run_configuration(
                name, preset, batch=batch, crop=crop, steps=steps, gpu=gpu, threads=threads
            )
            print(
                f"  {name}, {threads} thread(s): {result['seconds']:.2f} s/step "
                f"({time.perf_counter() - start:.0f} s with start-up)",
                flush=True,
            )
    marginal = {}
    if FLAGS.marginal_memory if FLAGS.marginal_memory is not None else not quick:
        if batch < 2:
            raise app.UsageError("--marginal_memory needs --batch_size >= 2.")
        for name in configurations:
            single = run_configuration(
                name, preset, batch=1, crop=crop, steps=1, gpu=gpu, threads=threads_list[-1]
            )
            big = results[name, threads_list[-1]]
            marginal[name] = (big["peak_bytes"] - single["peak_bytes"]) / (batch - 1)
            print(f"  {name}, batch 1: peak {common.mib(single['peak_bytes']):.0f} MiB", flush=True)
    rows = []
    for (name, threads), result in results.items():
        reference = results.get(("keras_float32", threads))
        torch_result = next(
            (r for (n, t), r in results.items() if n.startswith("torch") and t == threads), None
        )
        torch_ratio = torch_result["seconds"] / result["seconds"] if torch_result else None
        peak_mib = common.mib(result["peak_bytes"])
        rows.append(
            [
                name,
                threads,
                common.fmt(result["seconds"], 2),
                common.fmt(result["median_seconds"], 2),
                common.fmt(batch / result["seconds"], 2),
                common.fmt(reference["seconds"] / result["seconds"] if reference else None, 2),
                common.fmt(torch_ratio, 2),
                common.fmt(peak_mib, 0),
                common.fmt(peak_mib / batch, 0),
                common.fmt(common.mib(marginal.get(name)), 0),
            ]
        )
    print()
    print(
        common.markdown_table(
            [
                "configuration",
                "threads",
                "s/step (best)",
                "s/step (median)",
                "images/s",
                "vs keras_float32 (x)",
                "vs PyTorch (x)",
                "peak MiB",
                "peak MiB / batch",
                "MiB per extra image",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
