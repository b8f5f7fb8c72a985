#!/usr/bin/env bash
# The budget ladder on one GPU in at most about 8 minutes (issue: the comparison at budgets where the
# families have learned; docs/comparison.md): every row of the comparison trained once in one process,
# kept and judged at rungs of GPU wall-clock seconds (train.clock=wall: --rungs in minutes, default
# 3, 6 and 12 GPU-seconds), the judges (classifier, CLIP) capped at 30 GPU-seconds each, then training
# images/s and the fraction of the device's fp32 / bf16 matmul rate each family reaches
# (experiments.benchmarks.benchmark_speed). Results go to OUT_DIR/ladder-<device> (copy them to
# experiments/results/ladder/gpu/ beside the CPU ladder), runs to OUT_DIR/runs.
#
#   bash scripts/gpu_ladder.sh OUT_DIR [RUNGS]          # e.g. RUNGS=0.05,0.1,0.2 (minutes)
#   SMOKE=1 ONLY=vae bash scripts/gpu_ladder.sh /tmp/gl 0.005,0.01   # the CPU test of this script
#
# Needs Fashion-MNIST (Debian's dataset-fashion-mnist, or GENFAM_FASHION_MNIST_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash scripts/gpu_ladder.sh OUT_DIR [RUNGS]}
rungs=${2:-0.05,0.1,0.2}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# One process: each row compiles once and the later rungs reuse the persistent compilation cache.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$out/jax-cache}
device=$($PY -c "import jax; d = jax.devices()[0]; print((d.platform + '-' + d.device_kind).replace(' ', '_'))")
results=$out/ladder-$device
mkdir -p "$results"
smoke=(); [ -n "${SMOKE:-}" ] && smoke=(--smoke)
only=(); [ -n "${ONLY:-}" ] && only=(--only="$ONLY")
start=$(date +%s)
$PY -m experiments.comparison.ladder --in_process --clock=wall --rungs="$rungs" --root="$out/runs" --out="$results" \
  --judge_budget_minutes=0.5 "${smoke[@]}" "${only[@]}" 2>&1 | tee "$out/ladder.log"
configs=independent,realnvp,glow,vae,ddpm,iddpm,vdm,igpt,gan
[ -n "${SMOKE:-}" ] && configs=vae:smoke
$PY -m experiments.benchmarks.benchmark_speed --configs="$configs" --steps="${BENCH_STEPS:-10}" \
  --out="$results/benchmark_speed.json" 2>&1 | tee "$out/benchmark_speed.log"
echo "gpu_ladder: $(( $(date +%s) - start )) s on $device; results in $results"
