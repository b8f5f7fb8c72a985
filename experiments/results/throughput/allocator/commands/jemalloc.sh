#!/bin/bash
cd /work/main; export XLA_FLAGS=--xla_force_host_platform_device_count=2
O=/tmp/alloc/full; r=$1
JE=/lib/x86_64-linux-gnu/libjemalloc.so.2
CONF=thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1
SMALL=glow,vae,gan; BIG=glow@model.width=128@data.batch_size=64,ddpm,realnvp,igpt@model.depth=4
GLIBC_TUNABLES=glibc.malloc.hugetlb=0 nice .venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$SMALL --out=$O/default_small_$r.json > $O/default_small_$r.log 2>&1
MALLOC_CONF=$CONF LD_PRELOAD=$JE nice .venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$SMALL --out=$O/jemalloc_small_$r.json > $O/jemalloc_small_$r.log 2>&1
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 nice .venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$BIG --out=$O/default_big_$r.json > $O/default_big_$r.log 2>&1
MALLOC_CONF=$CONF LD_PRELOAD=$JE nice .venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$BIG --out=$O/jemalloc_big_$r.json > $O/jemalloc_big_$r.log 2>&1
