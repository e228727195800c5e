"""The inference model in the precision the machine runs fastest, checked against float32.

`inference_model(model, "auto" | "float32" | "bfloat16", check=...)` returns
the model with its BatchNorms folded (`folding.fold_batch_norm`), in float32
or with bfloat16 compute (Keras' `mixed_bfloat16`: weights float32, convs
and matmuls in bfloat16, the EM iterations and the logits in float32).

bfloat16 pays on CPUs with native bfloat16 arithmetic (`avx512_bf16`, or
Intel AMX `amx_bf16`) when TensorFlow runs its oneDNN kernels, the default
on x86 (`TF_ENABLE_ONEDNN_OPTS` unset or 1): on an AMD EPYC with avx512_bf16
a 3x3 512->512 conv at 65x65 runs 2x faster in bfloat16 than in float32.
Elsewhere (oneDNN off, older CPUs, other backends) bfloat16 is emulated and
no faster, so "auto" keeps float32 there.

bfloat16 keeps 8 bits of mantissa, so a pixel whose two best classes are
close can flip. A bfloat16 model is therefore only returned with its argmax
agreement with the float32 model measured on images the caller chooses
(`check`): below `AGREEMENT_THRESHOLD` an explicit "bfloat16" is refused
(`PrecisionRefusedError`, one line) and "auto" falls back to float32 and
says so in `InferenceChoice.reason`. Without a `check`, "auto" means float32:
nothing is ever chosen below the threshold unseen. int8 is not a Keras
model precision here: it is the full-integer TFLite export
(`ema_keras.export.export_tflite(quantization="int8")`), with its own
agreement check in `bench/export_table.py`.
"""

import dataclasses

import numpy as np

from ema_keras.backend import BACKEND, onednn_enabled
from ema_keras.inference.folding import fold_batch_norm

# What an inference model may run in (training's dtype policies are
# ema_keras.training.config.TRAINING_PRECISIONS).
INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")
PRECISIONS = INFERENCE_PRECISIONS  # the name ema_keras.inference exported first
# The share of pixels whose class must equal float32's for a faster path.
AGREEMENT_THRESHOLD = 0.995
# /proc/cpuinfo flags of native bfloat16 arithmetic that TF's oneDNN kernels use.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_DTYPE_POLICIES = {"float32": None, "bfloat16": "mixed_bfloat16"}


class PrecisionRefusedError(ValueError):
    """A precision asked for that falls below the agreement threshold on the check images."""


@dataclasses.dataclass(frozen=True)
class InferenceChoice:
    """The inference model, its precision, and why: what a program prints in one line."""

    model: object
    precision: str
    agreement: float = None  # argmax agreement with float32 on the check images, if measured
    reason: str = ""

    def describe(self):
        measured = "" if self.agreement is None else (
            f", {100 * self.agreement:.2f}% argmax agreement with float32"
        )
        return f"precision {self.precision} (BatchNorm folded{measured}; {self.reason})"


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (the first `flags` line of `cpuinfo`); empty where unreadable."""
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fastest_precision(flags=None, *, environ=None, backend=None, gpu=None):
    """("bfloat16" or "float32", why): the fastest precision this machine runs natively."""
    backend = BACKEND if backend is None else backend
    if backend != "tensorflow":
        return "float32", f"bfloat16 is only chosen on TensorFlow (backend {backend})"
    if gpu is None:
        import tensorflow as tf

        gpu = bool(tf.config.list_logical_devices("GPU"))
    if gpu:
        return "float32", "a GPU runs the model"
    native = sorted(set(BFLOAT16_CPU_FLAGS) & set(cpu_flags() if flags is None else flags))
    if not native:
        return "float32", "the CPU has no native bfloat16 (avx512_bf16/amx_bf16)"
    if not onednn_enabled(environ):
        return "float32", "TF_ENABLE_ONEDNN_OPTS=0: bfloat16 would be emulated"
    return "bfloat16", f"the CPU has {'+'.join(native)}"


def argmax_agreement(labels, reference):
    """Share of pixels with the same class in two lists of label maps."""
    same = sum(int(np.sum(np.asarray(a) == np.asarray(b))) for a, b in zip(labels, reference))
    total = sum(np.asarray(b).size for b in reference)
    if total == 0 or len(labels) != len(reference):
        raise ValueError("argmax_agreement needs label maps of the same images, at least one.")
    return same / total


def inference_model(
    model, precision="auto", *, check=None, threshold=AGREEMENT_THRESHOLD, flags=None,
    environ=None, asked=True,
):
    """The folded inference model in `precision`; an `InferenceChoice`.

    Args:
        model: a functional Keras segmenter (EMANet, MobileEMANet).
        precision: "auto" (the fastest the machine runs natively, kept only
            at >= `threshold` agreement on `check`), "float32" or "bfloat16".
        check: `check(model) -> list of (H, W) label maps` of a few images,
            e.g. `lambda m: [predict_label_map(m, image) for image in images]`;
            the same images through the float32 and the bfloat16 model give
            the argmax agreement. Needed for "auto" to choose bfloat16.
        threshold: the lowest agreement accepted (0.995: 99.5% of pixels).
        flags, environ: CPU flags and environment to decide from (default:
            this machine's /proc/cpuinfo and os.environ).
        asked: whether the caller chose `precision` (a program: the flag was
            given); False, the reason says it is the default instead of "asked for".

    Raises:
        PrecisionRefusedError: "bfloat16" asked for and measured below `threshold`.
        ValueError: an unknown `precision`.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}; got {precision!r}."
        )
    float32 = fold_batch_norm(model)
    why = "asked for" if asked else "default"
    if precision == "float32":
        return InferenceChoice(float32, "float32", reason=why)
    auto = precision == "auto"
    if auto:
        precision, reason = fastest_precision(flags, environ=environ)
        reason = f"auto: {reason}" if asked else f"auto (default): {reason}"
        if precision == "float32":
            return InferenceChoice(float32, "float32", reason=reason)
        if check is None:
            return InferenceChoice(
                float32, "float32", reason="auto: no images to check bfloat16's agreement on"
            )
    else:
        reason = why
    candidate = fold_batch_norm(model, dtype=_DTYPE_POLICIES[precision])
    if check is None:  # asked for explicitly, without images to measure on
        return InferenceChoice(candidate, precision, reason=f"{reason}; agreement not measured")
    agreement = argmax_agreement(check(candidate), check(float32))
    if agreement >= threshold:
        return InferenceChoice(candidate, precision, agreement, reason)
    below = (
        f"{precision} agrees with float32 on {100 * agreement:.2f}% of the check pixels, "
        f"below the {100 * threshold:.1f}% threshold"
    )
    if auto:
        return InferenceChoice(float32, "float32", agreement, f"auto: {below}, so float32")
    raise PrecisionRefusedError(f"{below}; use float32.")
