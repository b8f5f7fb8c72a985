# Throwaway device probe 1: what CPU, and do XLA:CPU's bf16 products (forward, gradients) reach its matrix units?
export JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
lscpu | grep -E 'Model name|Thread|Core|Socket|NUMA node|L2|L3|Flags' | cut -c1-200
grep -o -w 'avx512f\|avx512_bf16\|amx_tile\|amx_bf16\|avx2' /proc/cpuinfo | sort | uniq -c
C=$(python3 - <<'P'
import glob, os
cpus = sorted(int(p.split('cpu')[-1].split('/')[0]) for p in glob.glob('/sys/devices/system/cpu/cpu[0-9]*/topology/core_id'))
def key(c):
  r = lambda f: open(f'/sys/devices/system/cpu/cpu{c}/topology/{f}').read().strip()
  return r('physical_package_id'), r('core_id')
first = cpus[0]; second = next(c for c in cpus if key(c) != key(first) and key(c)[0] == key(first)[0])
print(f"{first},{second}")
P
)
echo "pinned to CPUs $C"; python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__)"
timeout 120 taskset -c $C python3 -m experiments.kernel_probe --dot_forms --out=$OUT/dot_forms.json
timeout 60 taskset -c $C python3 - <<'P'
import torch, time
torch.set_num_threads(2)
for dt in (torch.float32, torch.bfloat16):
  a, b = torch.randn(2048, 2048, dtype=dt), torch.randn(2048, 2048, dtype=dt)
  for _ in range(2): a @ b
  best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
  print(f"torch {torch.__version__} 2 threads, 2048^3 {dt}: {2 * 2048**3 / best / 1e9:.0f} GFLOP/s")
P
timeout 90 taskset -c $C python3 -m experiments.kernel_probe --channels=64 --reps=3 --out=$OUT/kernel_probe.json
timeout 120 taskset -c $C python3 experiments/results/throughput/amx/exploration/igpt_net.py
