# The three alternating rounds behind peers/*.json (run from the repository root, quiet, at 5c1d576;
# the peers' venv and checkouts as in experiments/peer_speed.py's docstring).
for r in 1 2 3; do
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m experiments.benchmark_speed --steps=10 \
      --configs=glow,glow@model.width=128@data.batch_size=64,ddpm,igpt@model.depth=4 --out=ours_ynn_$r.json
  ../peers-venv/bin/python experiments/peer_speed.py --malloc=jemalloc --glow_repo=../glow-pytorch \
      --mingpt_repo=../minGPT --peers=glow,glow@width=128@batch=64,ddpm,igpt --steps=10 --repeats=3 --out=peers_$r.json
  XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type=-individual_convolution" \
      python -m experiments.benchmark_speed --steps=10 \
      --configs=glow,glow@model.width=128@data.batch_size=64,ddpm,igpt@model.depth=4 --out=ours_eigen_$r.json
done
