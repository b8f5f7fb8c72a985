#!/bin/bash
# one alternating round: each arm in its own process per config group
cd /work/main; export XLA_FLAGS=--xla_force_host_platform_device_count=2
O=/tmp/alloc/full; r=$1
TC=/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
SMALL=glow,vae,gan; BIG=glow@model.width=128@data.batch_size=64,ddpm,realnvp,igpt@model.depth=4
GLIBC_TUNABLES=glibc.malloc.hugetlb=0 nice .venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$SMALL --out=$O/default_small_$r.json > $O/default_small_$r.log 2>&1
LD_PRELOAD=$TC nice .venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$SMALL --out=$O/tcmalloc_small_$r.json > $O/tcmalloc_small_$r.log 2>&1
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 nice .venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$BIG --out=$O/default_big_$r.json > $O/default_big_$r.log 2>&1
LD_PRELOAD=$TC nice .venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$BIG --out=$O/tcmalloc_big_$r.json > $O/tcmalloc_big_$r.log 2>&1
env -u GLIBC_TUNABLES nice ../peers-venv/bin/python experiments/peer_speed.py --glow_repo=../glow-pytorch --mingpt_repo=../minGPT --peers=glow,glow@width=128@batch=64,ddpm,igpt --steps=10 --repeats=3 --out=$O/peers_$r.json > $O/peers_$r.log 2>&1
env -u GLIBC_TUNABLES LD_PRELOAD=$TC nice ../peers-venv/bin/python experiments/peer_speed.py --glow_repo=../glow-pytorch --mingpt_repo=../minGPT --peers=glow,glow@width=128@batch=64,ddpm,igpt --steps=10 --repeats=3 --out=$O/peers_tcmalloc_$r.json > $O/peers_tcmalloc_$r.log 2>&1
