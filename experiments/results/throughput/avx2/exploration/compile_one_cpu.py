"""Throwaway: does XLA:CPU's splitting of loop fusions across the intra-op thread pool slow a
two-device step? XLA's ParallelTaskAssigner splits a fusion's outer dimension into as many parts
as the compiling thread's schedulable CPUs (`outer_dimension_partitions` in the optimized HLO).
Mode 'one' compiles the step with every thread of the process pinned to one CPU (so almost no
fusion is split) and runs it on all of them again; mode 'all' compiles as usual.

  XLA_FLAGS=--xla_force_host_platform_device_count=2 PYTHONPATH=. python \
    experiments/results/throughput/avx2/exploration/compile_one_cpu.py CONFIG one|all STEPS
"""
import os
import sys
import tempfile
import time

import jax

from experiments.benchmark_speed import CompiledStep, load_entry


def all_threads(cpus):
  for tid in os.listdir("/proc/self/task"):
    try:
      os.sched_setaffinity(int(tid), cpus)
    except OSError:
      pass


entry, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
jax.devices()                                   # clients and their thread pools see every CPU
config = load_entry(entry)
with tempfile.TemporaryDirectory() as workdir:
  cpus = os.sched_getaffinity(0)
  if mode == "one":
    all_threads({min(cpus)})
  step = CompiledStep(config, workdir)
  all_threads(cpus)
  split = step.compiled.as_text().count('outer_dimension_partitions":["')
  state = step.warm_up(2)
  start = time.perf_counter()
  state = step.run(state, steps, first=2)
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / steps
  print(f"{entry} {mode}: {split} split operations, {1e3 * seconds:.0f} ms/step, "
        f"{config.data.batch_size / seconds:.2f} images/s", flush=True)
