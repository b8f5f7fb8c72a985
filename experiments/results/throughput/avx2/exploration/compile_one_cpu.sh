# The runs of compile_one_cpu.log (quiet, jemalloc as genfam's default, two devices, alternating).
export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1
export XLA_FLAGS=--xla_force_host_platform_device_count=2 PYTHONPATH=$PWD
for entry in igpt@model.depth=4 ddpm; do
  for round in 1 2 3; do
    for mode in one all; do
      .venv/bin/python experiments/results/throughput/avx2/exploration/compile_one_cpu.py $entry $mode 6 2>&1 | grep ms/step
    done
  done
done
