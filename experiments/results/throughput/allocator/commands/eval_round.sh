#!/bin/bash
# DDPM's bounds, then the VAE's and Glow's, under glibc's settings as before and under jemalloc (the default), two devices
cd /work/main; export XLA_FLAGS=--xla_force_host_platform_device_count=2
O=/tmp/alloc/eval; r=$1
B="nice .venv/bin/python -m experiments.benchmark_eval --num_examples=16 --batch_size=8 --dtypes=float32"
env -u GLIBC_TUNABLES $B runs/compare/ddpm --set=train.malloc=glibc --set=train.huge_pages=True --out=$O/ddpm_glibc_$r.json > $O/ddpm_glibc_$r.log 2>&1
env -u GLIBC_TUNABLES $B runs/compare/ddpm --out=$O/ddpm_jemalloc_$r.json > $O/ddpm_jemalloc_$r.log 2>&1
env -u GLIBC_TUNABLES $B runs/compare/vae runs/compare/glow --set=train.malloc=glibc --out=$O/vae_glow_glibc_$r.json > $O/vae_glow_glibc_$r.log 2>&1
env -u GLIBC_TUNABLES $B runs/compare/vae runs/compare/glow --out=$O/vae_glow_jemalloc_$r.json > $O/vae_glow_jemalloc_$r.log 2>&1
