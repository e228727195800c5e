"""What every benchmark in bench/ shares: the machine header, timing, peak memory, tables.

Peak memory on CPU is the process' peak resident set size (VmHWM), read in a
fresh process per configuration (`run_isolated`) so that the peaks of
different configurations never mix; the peak is reset after the setup
(model building, weights) where the kernel allows it, so the figure is what
the measured call itself adds. On a GPU, TensorFlow's and PyTorch's own
allocator peaks are used instead.
"""

import concurrent.futures
import dataclasses
import importlib.metadata
import multiprocessing
import os
import platform
import statistics
import sys
import time

# The programs' TensorFlow log level (`ema_keras.backend.PROGRAM_TF_LOG_LEVEL`, which a
# bench that imports ema_keras first gets from there too): set here as well because a bench
# may load TensorFlow (through Keras) before ema_keras, or without it, and importing
# ema_keras here would load TensorFlow into every bench process, the PyTorch ones too.
# tests/test_log_filter.py checks that the two agree.
TF_LOG_LEVEL = "2"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def quiet_logs():
    """Warnings and errors only, from absl (which app.run sets to INFO) and TensorFlow."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The /proc/cpuinfo flags that decide which kernels run (float32 FMA width,
# bfloat16 and int8 dot products, Intel AMX tiles, float16 arithmetic).
ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512_fp16",
    "amx_bf16", "amx_int8", "amx_tile",
)  # fmt: skip


def isa_flags():
    """The `ISA_FLAGS` this CPU has, in that order (ema_keras reads /proc/cpuinfo once for all)."""
    from ema_keras.inference.precision import cpu_flags

    present = cpu_flags()
    return [flag for flag in ISA_FLAGS if flag in present]


def cpu_count():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _version(distribution):
    for name in (distribution, f"{distribution}-cpu"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def gpu_names():
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]


def header(title, settings):
    """Markdown lines naming the machine, the library versions and the settings."""
    memory_gib = _meminfo_bytes("MemTotal") / 2**30
    gpus = gpu_names()
    lines = [
        f"## {title}",
        "",
        f"- machine: {cpu_count()} CPU cores ({cpu_name()}), {memory_gib:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}; GPUs: {', '.join(gpus) or 'none'}",
        f"- CPU flags that matter: {' '.join(isa_flags()) or 'none of ' + ' '.join(ISA_FLAGS)}",
        f"- versions: python {platform.python_version()}, tensorflow {_version('tensorflow')}, "
        f"keras {_version('keras')}, numpy {_version('numpy')}, torch {_version('torch')}, "
        f"ai-edge-litert {_version('ai-edge-litert')}",
        "- settings: " + ", ".join(f"{key}={value}" for key, value in settings.items()),
        f"- load average at start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}",
        "",
    ]
    return "\n".join(lines)


def set_threads(threads, frameworks=("tensorflow",)):
    """Caps the CPU threads of `frameworks` ("tensorflow", "torch") at `threads` (None: defaults).

    Call it first thing in a fresh process: TensorFlow fixes its thread pools
    when it runs its first op. PyTorch's OpenMP pool slows down badly when
    another process takes one of its cores (a shared machine), so results on
    a busy machine are worth comparing at one thread too.
    """
    if threads is None:
        return
    if "tensorflow" in frameworks:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(threads)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call over the timed repetitions (after the warm-up calls)."""

    seconds: tuple

    @property
    def median(self):
        return statistics.median(self.seconds)

    @property
    def best(self):
        return min(self.seconds)


def time_calls(fn, *, warmup=1, repeats=3):
    """Calls `fn()` `warmup` times untimed, then `repeats` times timed."""
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return Timing(tuple(seconds))


def _meminfo_bytes(key, path="/proc/meminfo"):
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes():
    """Current resident set size of this process."""
    return _meminfo_bytes("VmRSS", "/proc/self/status")


def peak_rss_bytes():
    """Peak resident set size of this process (VmHWM; ru_maxrss where /proc is missing)."""
    peak = _meminfo_bytes("VmHWM", "/proc/self/status")
    if peak:
        return peak
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def release_free_memory():
    """Returns memory that Python and malloc hold free to the OS (glibc only; no-op elsewhere).

    Without it, buffers freed by an earlier call stay resident in malloc's
    pools, and a later call reusing them would not raise the measured peak.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory that the code inside a `with` block adds over what was resident before it.

    On CPU: the RSS peak over the RSS at entry, after freed memory has been
    returned to the OS (`release_free_memory`). With `gpu=True`: the peak of
    TensorFlow's GPU allocator (reset at entry), via `framework="tf"` or
    PyTorch's (`framework="torch"`).
    """

    def __init__(self, *, gpu=False, framework="tf"):
        self.gpu = gpu
        self.framework = framework
        self.bytes = None

    def __enter__(self):
        if self.gpu and self.framework == "tf":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("GPU:0")
            self._base = tf.config.experimental.get_memory_info("GPU:0")["current"]
        elif self.gpu:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            release_free_memory()
            self._base = rss_bytes()
            if not reset_peak_rss():
                self._base = peak_rss_bytes()  # best effort: earlier peaks may hide this one
        return self

    def __exit__(self, *exc_info):
        if self.gpu and self.framework == "tf":
            import tensorflow as tf

            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        elif self.gpu:
            import torch

            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = peak_rss_bytes()
        self.bytes = max(0, peak - self._base)
        return False


def run_isolated(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` in a fresh Python process; returns its (picklable) result.

    `fn` must be a module-level function. Each call pays a fresh TensorFlow
    import (a few seconds) and gets memory and thread pools of its own.
    """
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def markdown_table(headers, rows):
    """A markdown table; numbers in `rows` should already be formatted strings."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value, digits=2, missing="-"):
    """A number with `digits` decimals, or `missing` for None."""
    return missing if value is None else f"{value:.{digits}f}"


def mib(num_bytes):
    return None if num_bytes is None else num_bytes / 2**20
