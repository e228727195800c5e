#!/usr/bin/env bash
# The GPU training-step figures of issue 12, in one call of the `device` tool.
#
# The GPU machine has Python 3.12 with JAX (CUDA 13) and PyTorch but no Keras, no
# TensorFlow and no package index, and receives only the repository's working tree
# (the ../shared folder beside a checkout does not travel). So, once, on the
# session's machine, in the repository root:
#
#     mkdir -p .whl && cp /work/shared/device-wheels/*.whl .whl/   # ignored by .gitignore
#
# then the device tool's call (about 6 minutes on an H100; 480 s leaves room):
#
#     run(command="bash bench/device/run_gpu_bench.sh", carry=[".whl"], timeout_s=480)
#
# It installs the carried wheels (keras 3.15.1, namex, optree) into /tmp/site, runs
# bench/gpu_train_step.py --quick (EMANet-R101 OS8, batch 8, 513x513: Keras on JAX in
# float32, mixed_bfloat16, mixed_float16, and the PyTorch reference in float32 and AMP,
# each in a fresh process) and writes to $OUT, which comes back:
#   gpu_train_step.md   machine, versions, settings, one line per configuration as it
#                       ends (kept if the run is cut short), the table and the ratios
#   gpu_train_step.log  everything printed, errors included
#   nvidia-smi.txt      the GPU and driver
# Arguments go to the benchmark, e.g. `bash bench/device/run_gpu_bench.sh --batch_size 16`
# or `--configurations jax_mixed_bfloat16,torch_amp_float16`.
#
# CPU dry run of everything but the install (what tests/bench/test_gpu_train_step.py runs):
#     BENCH_SKIP_INSTALL=1 PYTHON=.venv/bin/python OUT=/tmp/out \
#         bash bench/device/run_gpu_bench.sh --device cpu --preset emanet_tiny_demo \
#         --crop_size 64 --batch_size 2
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
SITE="${SITE:-/tmp/site}"
OUT="${OUT:-/tmp/gpu_bench_out}"
mkdir -p "$OUT"

if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl)
  if [ ${#wheels[@]} -eq 0 ]; then
    echo "No wheels in $WHEELS: copy /work/shared/device-wheels/*.whl there and carry it." >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "${wheels[@]}"
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi: not available" > "$OUT/nvidia-smi.txt"
"$PYTHON" -c "import keras, jax; print('keras', keras.__version__, 'jax', jax.__version__)"

"$PYTHON" -m bench.gpu_train_step --quick --output "$OUT/gpu_train_step.md" "$@" 2>&1 \
  | tee "$OUT/gpu_train_step.log"
