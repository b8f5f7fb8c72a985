#!/bin/bash
# genfam (worktree code: benchmark_speed restarts itself under jemalloc, as genfam.main) and the peers
cd /work/wt; export XLA_FLAGS=--xla_force_host_platform_device_count=2
O=/tmp/alloc/full; r=$1
SMALL=glow,vae,gan; BIG=glow@model.width=128@data.batch_size=64,ddpm,realnvp,igpt@model.depth=4
env -u GLIBC_TUNABLES nice /work/main/.venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$SMALL --out=$O/jemalloc_small_$r.json > $O/jemalloc_small_$r.log 2>&1
env -u GLIBC_TUNABLES nice ../peers-venv/bin/python experiments/peer_speed.py --glow_repo=../glow-pytorch --mingpt_repo=../minGPT --peers=glow,glow@width=128@batch=64,ddpm,igpt --steps=10 --repeats=3 --out=$O/peers_$r.json > $O/peers_$r.log 2>&1
env -u GLIBC_TUNABLES nice /work/main/.venv/bin/python -m experiments.benchmark_speed --steps=10 --configs=$BIG --out=$O/jemalloc_big_$r.json > $O/jemalloc_big_$r.log 2>&1
env -u GLIBC_TUNABLES nice ../peers-venv/bin/python experiments/peer_speed.py --malloc=jemalloc --glow_repo=../glow-pytorch --mingpt_repo=../minGPT --peers=glow,glow@width=128@batch=64,ddpm,igpt --steps=10 --repeats=3 --out=$O/peers_jemalloc_$r.json > $O/peers_jemalloc_$r.log 2>&1
