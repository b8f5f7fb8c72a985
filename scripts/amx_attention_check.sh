#!/usr/bin/env bash
# Prepared for the next session with an AMX CPU (not yet run on one): does writing the image-GPT's
# attention products in canonical form let its bf16 training step beat fp32?
#
#   bash scripts/amx_attention_check.sh OUT_DIR      # about 3 minutes
#
# Needs jax, flax and optax only (no data). Pins two cores, as the issue's 2-core machine type.
# Writes to OUT_DIR: cpu.txt (the CPU and its bf16 flags), attention_forms.{md,json}
# (`kernel_probe --attention_forms`) and igpt_step_attention.md (`experiments.probes.igpt_step_probe`, two
# alternating rounds of float32, bfloat16 and bfloat16+chunked_attention). The question and the
# results so far: docs/performance.md, "On an AMX CPU".
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: amx_attention_check.sh OUT_DIR}
mkdir -p "$out"
export JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
{ lscpu | grep -i 'model name'; grep -o 'amx_bf16\|avx512_bf16' /proc/cpuinfo | sort -u
  $PY -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__)"; } > "$out/cpu.txt" 2>&1
timeout 120 taskset -c 0,1 $PY -m experiments.probes.kernel_probe --attention_forms --out="$out/attention_forms.json" \
  > "$out/attention_forms.md" 2>&1
timeout 300 taskset -c 0,1 $PY -m experiments.probes.igpt_step_probe \
  float32 bfloat16 bfloat16+chunked_attention float32 bfloat16 bfloat16+chunked_attention \
  > "$out/igpt_step_attention.md" 2>&1
cat "$out"/cpu.txt "$out"/attention_forms.md "$out"/igpt_step_attention.md
