"""Training speed of the PyTorch peers named in the throughput issue, on this machine.

Not part of genfam: it runs in its own virtual environment with PyTorch, which genfam
never imports (no test collects this file):

  python3 -m venv ../peers-venv
  ../peers-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 denoising-diffusion-pytorch==2.3.4
  git clone https://github.com/rosinality/glow-pytorch ../glow-pytorch   # 97081ff
  git clone https://github.com/karpathy/minGPT ../minGPT                 # 37baab7
  ../peers-venv/bin/python experiments/benchmarks/peer_speed.py --glow_repo=../glow-pytorch \
      --peers=glow,glow@width=128@batch=64,ddpm --out=experiments/results/throughput/peers.json

Peers, each timed as its own training loop steps (forward, loss, backward, Adam):
  glow  rosinality/glow-pytorch's `Glow(1, n_flow, n_block, affine=True, conv_lu=True)`,
        its coupling network's width (`AffineCoupling`'s filter_size, 512 in that code)
        set to `width`. With n_flow=8, n_block=2, width=64 on 28x28x1 this is the same
        network as configs/glow.py (squeeze, K x (actnorm, LU 1x1 conv, affine coupling
        conv3x3-relu-conv1x1-relu-zero-conv3x3 with scale sigmoid(h + 2)), split with a
        learned conditional prior, learned top prior), so images/s compare directly.
        Loss: bits/dim of x - 0.5 + U(0, 1/256) noise, as that repository's train.py.
  ddpm  lucidrains' denoising-diffusion-pytorch `Unet(dim, dim_mults, channels=1)` inside
        `GaussianDiffusion(image_size=28, objective='pred_noise', beta_schedule='linear')`.
        Its U-Net is not genfam's (two residual blocks and linear attention per level),
        so compare FLOP/s, counted the same way on both sides (below).
  igpt  karpathy/minGPT's `GPT` with n_layer=depth, n_head=heads, n_embd=width (4, 4, 128:
        its 'gpt-micro', issue 9's reference), vocabulary 257, block 784, dropout 0 (minGPT's
        default is 0.1: `igpt@dropout=0.1`), on
        random pixel sequences: the network of `igpt@model.depth=4` (pre-norm blocks,
        GELU MLP of 4x width, learned positions), next-pixel cross-entropy.
`--clip_ema` adds what genfam's step also does: gradient-norm clipping and an EMA of the
weights (foreach ops).

FLOPs per step are counted by `torch.utils.flop_counter.FlopCounterMode` on one step:
matmuls and convolutions, forward and backward, 2 per multiply-add; genfam's side of
that count is `experiments/benchmarks/flop_count.py` (benchmark_speed's `matmul_conv_flops_per_step`).
Each entry times `--steps` steps after `--warmup` steps, `--repeats` times, and reports
the median; `name@key=value` sets an entry's keys (width, n_flow, n_block, batch for
glow; dim, batch for ddpm; depth, heads, width, dropout, batch for igpt). `--compile`
wraps the model in torch.compile (inductor). `--malloc_retain_mib=1024` gives the peer
what genfam's runs do by default (train.malloc_retain_mib: glibc keeps freed memory mapped,
genfam/cpu/host_memory.py); 0, the default, leaves glibc's defaults, as a PyTorch user has them.
`--malloc=jemalloc` restarts the peer with jemalloc preloaded and configured as genfam.main starts
genfam's runs by default (train.malloc; a preloaded jemalloc or tcmalloc is also what PyTorch's CPU
tuning guides advise).
"""
import argparse
import importlib.util
import json
import math
import os
import resource
import statistics
import sys
import time

import torch


def host_memory():
  """genfam's `host_memory` module, loaded from its file: the genfam package imports JAX, which
  this environment does not have."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "genfam", "cpu", "host_memory.py")
  spec = importlib.util.spec_from_file_location("host_memory", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def glow_step(args, opts):
  sys.path.insert(0, args.glow_repo)
  import model as glow_model   # rosinality/glow-pytorch's model.py
  width, n_flow, n_block = int(opts.get("width", 64)), int(opts.get("n_flow", 8)), int(opts.get("n_block", 2))
  # Its coupling width is a constructor default that Glow never passes; set it, don't edit the code.
  glow_model.AffineCoupling.__init__.__defaults__ = (width, True)
  net = glow_model.Glow(1, n_flow, n_block, affine=True, conv_lu=True)
  batch = int(opts.get("batch", 32))
  x = torch.floor(torch.rand(batch, 1, 28, 28) * 256) / 256 - 0.5
  num_dims = 28 * 28
  with torch.no_grad():                      # ActNorm's data-dependent initialisation
    net(x + torch.rand_like(x) / 256)
  model = torch.compile(net) if args.compile else net

  def loss_fn():
    log_p, logdet, _ = model(x + torch.rand_like(x) / 256)
    log_likelihood = log_p + logdet - math.log(256) * num_dims
    return (-log_likelihood / (math.log(2) * num_dims)).mean()

  describe = (f"rosinality/glow-pytorch Glow(1, n_flow={n_flow}, n_block={n_block}, affine, LU), "
              f"coupling width {width}, 28x28x1")
  return net, loss_fn, batch, describe


def ddpm_step(args, opts):
  from denoising_diffusion_pytorch import GaussianDiffusion, Unet
  dim = int(opts.get("dim", 32))
  mults = tuple(int(m) for m in str(opts.get("dim_mults", "1-2-2")).split("-"))
  net = GaussianDiffusion(Unet(dim=dim, dim_mults=mults, channels=1), image_size=28, timesteps=1000,
                          objective="pred_noise", beta_schedule="linear")
  batch = int(opts.get("batch", 64))
  x = torch.rand(batch, 1, 28, 28)
  model = torch.compile(net) if args.compile else net
  describe = f"lucidrains denoising-diffusion-pytorch Unet(dim={dim}, dim_mults={mults}, channels=1), 28x28x1"
  return net, (lambda: model(x)), batch, describe


def igpt_step(args, opts):
  sys.path.insert(0, args.mingpt_repo)
  from mingpt.model import GPT   # karpathy/minGPT's model.py
  config = GPT.get_default_config()
  config.model_type = None
  config.n_layer, config.n_head, config.n_embd = (int(opts.get(k, d)) for k, d in
                                                  (("depth", 4), ("heads", 4), ("width", 128)))
  config.vocab_size, config.block_size = 257, 784           # 256 grey levels + a start token; 28 x 28 positions
  dropout = float(opts.get("dropout", 0.0))                 # genfam's igpt: 0; minGPT's default: 0.1
  config.embd_pdrop = config.resid_pdrop = config.attn_pdrop = dropout
  net = GPT(config)
  batch = int(opts.get("batch", 16))
  pixels = torch.randint(0, 256, (batch, 784))
  inputs = torch.cat([torch.full((batch, 1), 256), pixels[:, :-1]], dim=1)   # shifted right behind the start token
  model = torch.compile(net) if args.compile else net
  describe = (f"karpathy/minGPT GPT(n_layer={config.n_layer}, n_head={config.n_head}, n_embd={config.n_embd}), "
              f"784 tokens, dropout {dropout}")
  return net, (lambda: model(inputs, pixels)[1]), batch, describe


PEERS = {"glow": glow_step, "ddpm": ddpm_step, "igpt": igpt_step}


def time_entry(args, entry: str) -> dict:
  name, *sets = entry.split("@")
  opts = dict(s.split("=", 1) for s in sets)
  torch.manual_seed(0)
  net, loss_fn, batch, describe = PEERS[name](args, opts)
  params = [p for p in net.parameters() if p.requires_grad]
  opt = torch.optim.Adam(params, lr=1e-3)
  ema = [p.detach().clone() for p in params]

  def step():
    loss = loss_fn()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if args.clip_ema:
      torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if args.clip_ema:
      with torch.no_grad():
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - 0.995)
    return loss.detach()

  for _ in range(args.warmup):
    step()
  from torch.utils.flop_counter import FlopCounterMode
  counter = FlopCounterMode(display=False)
  with counter:
    step()
  flops = counter.get_total_flops()
  rates = []
  before = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      loss = step()
    loss.item()
    rates.append(batch * args.steps / (time.perf_counter() - start))
  after = resource.getrusage(resource.RUSAGE_SELF)
  images_per_s = statistics.median(rates)
  timed_steps = args.steps * args.repeats
  return {"peer": describe, "batch_size": batch, "images_per_s": images_per_s, "images_per_s_runs": rates,
          "parameters": sum(p.numel() for p in params), "matmul_conv_flops_per_step": flops,
          "matmul_conv_flops_per_s": flops * images_per_s / batch,
          "minor_page_faults_per_step": (after.ru_minflt - before.ru_minflt) / timed_steps,
          "system_seconds_per_step": (after.ru_stime - before.ru_stime) / timed_steps}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--peers", default="glow,ddpm", help="comma-separated name[@key=value...]")
  parser.add_argument("--glow_repo", default="../glow-pytorch", help="a clone of rosinality/glow-pytorch")
  parser.add_argument("--mingpt_repo", default="../minGPT", help="a clone of karpathy/minGPT")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
  parser.add_argument("--clip_ema", action="store_true", help="add gradient clipping and an EMA, as genfam's step")
  parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
  parser.add_argument("--malloc_retain_mib", type=int, default=0,
                      help="glibc keeps this many MiB of freed memory mapped, as genfam's runs do (0: glibc's defaults)")
  parser.add_argument("--malloc", default="glibc", choices=("glibc", "jemalloc"),
                      help="jemalloc: restart with it preloaded, as genfam.main does (train.malloc)")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  memory = host_memory()
  memory.restart_for(args.malloc, huge_pages=False)
  retained = memory.retain_freed_memory(args.malloc_retain_mib) and memory.malloc_in_use() == "glibc"
  torch.set_num_threads(args.threads)
  rows = {entry: time_entry(args, entry) for entry in args.peers.split(",")}
  settings = {"torch": torch.__version__, "threads": torch.get_num_threads(), "compile": args.compile,
              "clip_ema": args.clip_ema, "steps": args.steps, "repeats": args.repeats,
              "mkldnn": torch.backends.mkldnn.is_available(), "malloc_retain_mib": args.malloc_retain_mib if retained else 0,
              "malloc": memory.malloc_in_use()}
  print("settings: " + ", ".join(f"{k} {v!r}" for k, v in settings.items()))
  print("| peer | batch | images/s (median) | matmul+conv GFLOP/step | GFLOP/s | page faults/step | kernel s/step |")
  print("|---|---|---:|---:|---:|---:|---:|")
  for entry, r in rows.items():
    print(f"| {entry}: {r['peer']} | {r['batch_size']} | {r['images_per_s']:.1f} | "
          f"{r['matmul_conv_flops_per_step'] / 1e9:.2f} | {r['matmul_conv_flops_per_s'] / 1e9:.1f} | "
          f"{r['minor_page_faults_per_step']:.0f} | {r['system_seconds_per_step']:.3f} |")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"settings": settings, "peers": rows}, f, indent=2)


if __name__ == "__main__":
  main()
