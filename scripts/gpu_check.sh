#!/usr/bin/env bash
# The GPU check CI cannot run (it has no GPU): on a machine with a CUDA jax, run the tests
# that touch the platform (convolution kernels, mixed precision, every config's smoke run with
# its resume, the loop, the host-memory restart) and time training steps.
#
#   bash scripts/gpu_check.sh OUT_DIR [WHEEL_DIR]
#
# WHEEL_DIR: wheels of genfam's dependencies that the machine lacks (installed with --no-deps
# into a temporary folder first). JEMALLOC_SO: a libjemalloc.so.2 to install (as root) after the first
# run, so that genfam.main's default allocator restart is checked both ways. Each phase has its own
# time limit (seconds: TESTS_S, BENCH_S) and writes its log to OUT_DIR.
# The benchmark's default configs train on Fashion-MNIST: where the machine has no Debian package,
# point GENFAM_FASHION_MNIST_DIR at a folder with its four IDX files.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash scripts/gpu_check.sh OUT_DIR [WHEEL_DIR]}
wheels=${2:-}
mkdir -p "$out"
PY=${PYTHON:-python3}
if [ -n "$wheels" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpu_check_site "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# Several test processes share the GPU: each takes memory as it needs it, not 75% up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  $PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices())"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "from genfam.cpu import host_memory as h; print('jemalloc library before:', h.jemalloc_library())"
} 2>&1 | tee "$out/versions.log"

# genfam.main's default run without jemalloc on the machine, then with it: both must run (on a GPU
# genfam.main prints no 'host memory:' line; the rc lines and the test bits/dim are the check).
timeout 120 $PY -m genfam.main --config=configs/glow.py:smoke --workdir=/tmp/gpu_check/glow_glibc \
  > "$out/main_without_jemalloc.log" 2>&1; echo "rc=$?" >> "$out/main_without_jemalloc.log"

if [ -n "${JEMALLOC_SO:-}" ] && [ -e "$JEMALLOC_SO" ]; then
  cp "$JEMALLOC_SO" /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 && ldconfig
  timeout 120 $PY -m genfam.main --config=configs/glow.py:smoke --workdir=/tmp/gpu_check/glow_jemalloc \
    > "$out/main_with_jemalloc.log" 2>&1; echo "rc=$?" >> "$out/main_with_jemalloc.log"
fi
grep -h "host memory\|^rc=" "$out"/main_*.log

timeout "${TESTS_S:-240}" $PY -m pytest -q -n "${WORKERS:-8}" -p no:cacheprovider \
  tests/test_conv_transpose.py tests/test_phase_conv.py tests/test_matmul_conv.py \
  tests/test_mixed_precision.py tests/test_host_memory.py tests/test_train.py \
  tests/test_configs_e2e.py > "$out/tests.log" 2>&1
echo "tests rc=$?" | tee -a "$out/tests.log"
tail -25 "$out/tests.log"

timeout "${BENCH_S:-150}" $PY -m experiments.benchmarks.benchmark_speed --steps=20 \
  --configs="${BENCH_CONFIGS:-ddpm,igpt@model.depth=4,glow}" --out="$out/benchmark_speed.json" \
  > "$out/benchmark_speed.log" 2>&1
echo "benchmark rc=$?" | tee -a "$out/benchmark_speed.log"
tail -15 "$out/benchmark_speed.log"
