"""GPU training step of our model on the Keras JAX backend, against the PyTorch reference.

    python -m bench.gpu_train_step            # R101 OS8, batch 8, 513x513 crops, on the GPU
    python -m bench.gpu_train_step --quick    # the same, fewer steps (the device script's run)
    python -m bench.gpu_train_step --quick --device cpu --preset emanet_tiny_demo \\
        --crop_size 64 --batch_size 2         # the CPU smoke run of the tests

Runs without TensorFlow (the GPU machine has none): Keras on JAX, so every
step is one XLA program. Configurations, each in a fresh process (dtype
policies are global):

- `jax_float32`, `jax_mixed_bfloat16`, `jax_mixed_float16` (loss scaling by
  `keras.optimizers.LossScaleOptimizer`): what `fit` runs for a batch, written
  out with `stateless_call`, `jax.value_and_grad` and the optimizer's
  `stateless_apply` in one `jax.jit` that donates the state (as Keras' JAX
  trainer does). Forward in training mode (EMA bases and BatchNorm statistics
  update), the masked cross-entropy of `ema_keras.losses` (written
  here in `keras.ops`: ours imports the TensorFlow data module for the ignore
  label), `keras.optimizers.SGD` with momentum 0.9.
- `torch_float32`, `torch_amp_float16`: `bench/train_step.torch_step`, the
  PyTorch reference (`torch.autocast` float16 + `GradScaler` for AMP).

Rates come from the fastest timed step after the warm-up (the median is shown
too). Memory is what the training steps add over the model, optimizer state
and batch: on a GPU, JAX's allocator peak (`peak_bytes_in_use`, which cannot
be reset, so compile-time autotuning scratch counts if it was larger) minus
what was in use before the first step, and PyTorch's `max_memory_allocated`
over its allocation at entry; XLA's own plan for the step (`memory_analysis`
temp bytes: activations, gradients, workspaces) is shown beside it. On a CPU,
JAX reports no allocator figures and PyTorch's is the process RSS: the CPU run
is a smoke test, not a measurement.
"""

import os
import sys
import time
import traceback

from absl import app, flags

from bench import common
from bench.train_step import IGNORE, LEARNING_RATE, MOMENTUM, random_batch, torch_step

FLAGS = flags.FLAGS
JAX_POLICIES = {
    "jax_float32": "float32",
    "jax_mixed_bfloat16": "mixed_bfloat16",
    "jax_mixed_float16": "mixed_float16",
}
TORCH_AMP = {"torch_float32": False, "torch_amp_float16": True}
CONFIGURATIONS = (*JAX_POLICIES, *TORCH_AMP)
# Issue 12's goals: mixed precision >= 2.0x our float32, >= 1.1x PyTorch AMP's
# images/s, memory per image <= PyTorch AMP's.
GOALS = {"mixed_vs_float32": 2.0, "vs_torch_amp": 1.1, "memory_vs_torch_amp": 1.0}


def masked_cross_entropy(labels, logits, ignore_label=IGNORE):
    """Mean cross-entropy from logits over the pixels whose label != ignore_label.

    The value of `ema_keras.losses.MaskedSparseCrossEntropy` (whose
    per-image shares average to exactly this), in float32 whatever the logits'
    dtype.
    """
    import keras
    from keras import ops

    labels = ops.cast(labels, "int32")
    valid = ops.not_equal(labels, ignore_label)
    safe_labels = ops.where(valid, labels, ops.zeros_like(labels))
    pixel_loss = keras.losses.sparse_categorical_crossentropy(
        safe_labels, ops.cast(logits, "float32"), from_logits=True
    )
    weights = ops.cast(valid, "float32")
    return ops.sum(pixel_loss * weights) / ops.maximum(ops.sum(weights), 1.0)


def machine_info(device):
    """Accelerator names and library versions, read in a fresh process.

    Reading them here would start JAX's GPU client in the parent, whose
    preallocation would starve the configurations' processes.
    """
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    import jax
    import keras
    import torch

    info = {
        "jax devices": ", ".join(sorted({d.device_kind for d in jax.devices()})),
        "jax platform": jax.devices()[0].platform,
        "jax default matmul precision": str(jax.config.jax_default_matmul_precision),
        "versions": f"python {sys.version.split()[0]}, jax {jax.__version__}, "
        f"jaxlib {common._version('jaxlib')}, keras {keras.__version__}, "
        f"torch {torch.__version__}, numpy {common._version('numpy')}",
        "torch device": "cpu",
    }
    if device == "gpu" and torch.cuda.is_available():
        info["torch device"] = (
            f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}, "
            f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
            f"TF32 conv {torch.backends.cudnn.allow_tf32})"
        )
    return info


def keras_jax_step(preset, *, batch, crop, steps, warmup, policy, device):
    """Our model's training step on JAX under `policy`: seconds, memory, compile time."""
    import jax
    import keras

    from ema_keras.models import EMANetImageSegmenter

    platform = jax.devices()[0].platform
    if device == "gpu" and platform != "gpu":
        raise RuntimeError(f"--device gpu, but JAX sees only {platform} devices.")
    # No keras.utils.set_random_seed: it imports TensorFlow where installed.
    keras.mixed_precision.set_global_policy(policy)
    model = EMANetImageSegmenter.from_preset(preset, seed=0)
    optimizer = keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)

    def loss_and_updates(trainable, non_trainable, optimizer_variables, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        loss = masked_cross_entropy(y, logits)
        mapping = list(zip(optimizer.variables, optimizer_variables))
        with keras.StatelessScope(state_mapping=mapping):
            scaled = optimizer.scale_loss(loss)
        return scaled, (loss, non_trainable)

    def train_step(state, x, y):
        trainable, non_trainable, optimizer_variables = state
        gradient_fn = jax.value_and_grad(loss_and_updates, has_aux=True)
        (_, (loss, non_trainable)), gradients = gradient_fn(
            trainable, non_trainable, optimizer_variables, x, y
        )
        trainable, optimizer_variables = optimizer.stateless_apply(
            optimizer_variables, gradients, trainable
        )
        return loss, (trainable, non_trainable, optimizer_variables)

    state = tuple(
        [v.value for v in variables]
        for variables in (model.trainable_variables, model.non_trainable_variables,
                          optimizer.variables)
    )
    images, labels = (jax.device_put(v) for v in random_batch(batch, crop))
    start = time.perf_counter()
    compiled = jax.jit(train_step, donate_argnums=0).lower(state, images, labels).compile()
    compile_seconds = time.perf_counter() - start
    analysis = compiled.memory_analysis()

    def step():
        nonlocal state
        loss, state = compiled(state, images, labels)
        return float(loss)  # waits for the step

    stats = jax.devices()[0].memory_stats()
    base = stats["bytes_in_use"] if stats else None
    timing = common.time_calls(step, warmup=warmup, repeats=steps)
    stats = jax.devices()[0].memory_stats()
    peak = stats["peak_bytes_in_use"] - base if stats and base is not None else None
    return {
        "seconds": timing.best,
        "median_seconds": timing.median,
        "peak_bytes": peak,
        "xla_temp_bytes": getattr(analysis, "temp_size_in_bytes", None),
        "compile_seconds": compile_seconds,
        "loss": step(),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


def torch_architecture(preset):
    """Keyword arguments for the PyTorch reference: None (the preset's own) if it reads it.

    Presets with explicit block counts (the tiny demo) get the reference at
    those counts and head sizes, at its fixed ResNet widths: a smoke-test
    stand-in, not the same model.
    """
    from ema_keras.models.presets import get_preset

    config = get_preset(preset)  # segmenter, its backbone (the head), its image encoder
    head = config["backbone"]
    encoder = head["image_encoder"]
    if "depth" in encoder:
        return None
    return {
        "num_classes": config["num_classes"],
        "block_counts": encoder["block_counts"],
        "output_stride": encoder["output_stride"],
        "head_channels": head.get("head_channels", 512),
        "classifier_channels": head.get("classifier_channels", 256),
        "num_bases": head.get("ema_num_bases", 64),
    }


def run_configuration(name, preset, *, batch, crop, steps, warmup, device):
    """One configuration in a fresh process; a failure (out of memory, say) is returned."""
    try:
        if name in JAX_POLICIES:
            return common.run_isolated(
                keras_jax_step, preset, batch=batch, crop=crop, steps=steps, warmup=warmup,
                policy=JAX_POLICIES[name], device=device,
            )
        return common.run_isolated(
            torch_step, preset, batch=batch, crop=crop, steps=steps, amp=TORCH_AMP[name],
            gpu=device == "gpu", threads=None, architecture=torch_architecture(preset),
            warmup=warmup,
        )
    except Exception as error:  # noqa: BLE001 - one failed configuration must not lose the rest
        traceback.print_exc()
        first_line = str(error).splitlines()[0] if str(error) else ""
        return {"error": f"{type(error).__name__}: {first_line}"}


def ratio(numerator, denominator):
    return None if numerator is None or not denominator else numerator / denominator


def times(value):
    """'1.23x', or 'n/a' where a side is missing."""
    return "n/a" if value is None else f"{value:.2f}x"


def report(results, batch):
    """The markdown table and the ratios that issue 12 asks for."""
    def rate(name):
        result = results.get(name) or {}
        return batch / result["seconds"] if "seconds" in result else None

    def per_image(name):
        result = results.get(name) or {}
        return ratio(result.get("peak_bytes"), batch)

    rows = []
    for name, result in results.items():
        if "error" in result:
            rows.append([name] + ["-"] * 9 + [f"failed: {result['error']}"])
            continue
        rows.append([
            name,
            common.fmt(result["seconds"], 3),
            common.fmt(result["median_seconds"], 3),
            common.fmt(rate(name), 1),
            common.fmt(ratio(rate(name), rate("jax_float32")), 2),
            common.fmt(ratio(rate(name), rate("torch_amp_float16")), 2),
            common.fmt(common.mib(result["peak_bytes"]), 0),
            common.fmt(common.mib(per_image(name)), 0),
            common.fmt(common.mib(result.get("xla_temp_bytes")), 0),
            common.fmt(result.get("compile_seconds"), 1),
            "",
        ])
    table = common.markdown_table(
        ["configuration", "s/step (best)", "s/step (median)", "images/s", "vs jax_float32 (x)",
         "vs torch AMP (x)", "peak MiB", "MiB / image", "XLA temp MiB", "compile s", "note"],
        rows,
    )
    lines = [table, ""]
    for name in ("jax_mixed_bfloat16", "jax_mixed_float16"):
        lines.append(
            f"- {name} vs jax_float32: {times(ratio(rate(name), rate('jax_float32')))} "
            f"(goal >= {GOALS['mixed_vs_float32']}x)"
        )
    ours = [n for n in JAX_POLICIES if rate(n) is not None]
    best = max(ours, key=rate) if ours else None
    lines.append(
        f"- ours at its fastest ({best}) vs torch_amp_float16 images/s: "
        f"{times(ratio(rate(best), rate('torch_amp_float16')) if best else None)} "
        f"(goal >= {GOALS['vs_torch_amp']}x)"
    )
    lowest = min((n for n in ours if per_image(n) is not None), key=per_image, default=None)
    lines.append(
        f"- memory per image, ours at its lowest ({lowest}) vs torch_amp_float16: "
        f"{times(ratio(per_image(lowest), per_image('torch_amp_float16')) if lowest else None)}"
        f" (goal <= {GOALS['memory_vs_torch_amp']}x)"
    )
    planned = [n for n in ours if results[n].get("xla_temp_bytes") is not None]
    if planned:
        name = min(planned, key=lambda n: results[n]["xla_temp_bytes"])
        planned_per_image = results[name]["xla_temp_bytes"] / batch
        lines.append(
            f"- the same by XLA's plan ({name}, temp bytes / image) vs torch_amp_float16: "
            f"{times(ratio(planned_per_image, per_image('torch_amp_float16')))}"
        )
    return "\n".join(lines)


def emit(lines, path, mode="a"):
    """Prints `lines` and appends them to `path` (if any) at once: a run cut short keeps them."""
    text = "\n".join(lines)
    print(text, flush=True)
    if path:
        with open(path, mode) as handle:
            handle.write(text + "\n")


def define_flags():
    """Command-line flags (defined only when run as a script)."""
    flags.DEFINE_string("preset", "emanet_resnet101_os8_voc", "EMANet preset.")
    flags.DEFINE_integer("crop_size", 513, "Square crop.")
    flags.DEFINE_integer("batch_size", 8, "Images per step.")
    flags.DEFINE_bool("quick", False, "Fewer steps: 1 warm-up and 3 timed (default 2 and 10).")
    flags.DEFINE_integer("steps", None, "Timed steps (default 10; 3 with --quick).")
    flags.DEFINE_enum("device", "gpu", ["gpu", "cpu"], "Where to run (cpu: the smoke test).")
    flags.DEFINE_list("configurations", list(CONFIGURATIONS), "Subset of the configurations.")
    flags.DEFINE_string("output", None, "Also write the report (markdown) to this file.")


def main(argv):
    del argv
    common.quiet_logs()
    os.environ["KERAS_BACKEND"] = "jax"  # inherited by the configurations' processes
    if FLAGS.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    for name in FLAGS.configurations:
        if name not in CONFIGURATIONS:
            raise app.UsageError(f"--configurations: {name!r} is not one of {CONFIGURATIONS}.")
    batch, crop = FLAGS.batch_size, FLAGS.crop_size
    steps = FLAGS.steps or (3 if FLAGS.quick else 10)
    warmup = 1 if FLAGS.quick else 2
    info = common.run_isolated(machine_info, FLAGS.device)
    lines = [
        "## EMANet training step on the GPU: Keras on JAX against the PyTorch reference",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {info['jax devices']} (JAX platform {info['jax platform']}); "
        f"torch sees {info['torch device']}; {common.cpu_count()} CPU cores ({common.cpu_name()})",
        f"- versions: {info['versions']}; JAX default matmul precision: "
        f"{info['jax default matmul precision']}",
        f"- settings: preset={FLAGS.preset}, batch={batch}, crop={crop}x{crop}, "
        f"warm-up steps={warmup}, timed steps={steps}, "
        f"SGD lr {LEARNING_RATE} momentum {MOMENTUM}, random images and labels",
        "",
    ]
    emit(lines, FLAGS.output, mode="w")
    results = {}
    for name in FLAGS.configurations:
        start = time.perf_counter()
        results[name] = result = run_configuration(
            name, FLAGS.preset, batch=batch, crop=crop, steps=steps, warmup=warmup,
            device=FLAGS.device,
        )
        if result.get("tensorflow_imported"):
            raise RuntimeError(f"{name} imported TensorFlow, which the GPU machine lacks.")
        summary = result["error"] if "error" in result else f"{result['seconds']:.3f} s/step"
        emit([f"- {name}: {summary} ({time.perf_counter() - start:.0f} s with start-up)"],
             FLAGS.output)
    if "tensorflow" in sys.modules:
        raise RuntimeError("The benchmark imported TensorFlow, which the GPU machine lacks.")
    emit(["", report(results, batch)], FLAGS.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
