"""RealNVP (Dinh et al. 2017) on Fashion-MNIST, sized for a 2-core CPU.

Run:
  python -m genfam.main --config=configs/realnvp.py --workdir=runs/realnvp
  python -m genfam.main --config=configs/realnvp.py --mode=eval --workdir=runs/realnvp
  python -m genfam.main --config=configs/realnvp.py:smoke --workdir=/tmp/realnvp-smoke   # seconds, digits

Reaches: 3.797 +- 0.009 bits/dim (exact; all 10000 test images, 1
dequantization draw) after a short run of 600 steps of 64 (0.64 epoch), 17
minutes of training on one core of a 2-core AVX-512 CPU (37.5 images/s), peak
RSS 1.4 GiB:
  python -m genfam.main --config=configs/realnvp.py --config.train.num_steps=600 \
      --config.eval.num_draws=1 --workdir=runs/realnvp
It trains at a third of Glow's speed (37.8 vs 118 images/s on both cores in
`python -m experiments.benchmark_speed`: 27.3 GFLOP per step, 12% of the
machine's fp32 matmul rate; a second core gains nothing here), because its
checkerboard couplings work at the full 28x28 resolution; the 2000-step default
takes about an hour here.

Architecture (Dinh et al.'s multi-scale plan, batch-norm free): logit
preprocessing y = logit(0.05 + 0.9 x) (its Jacobian is counted in the bits/dim);
one scale of 3 checkerboard couplings at 28x28x1, squeeze to 14x14x4, 3 channel
couplings, factor out half (N(0, I)); final scale of 4 checkerboard couplings
at 14x14x2. Each coupling's network is a ResNet (one residual block, width 32,
layer norm, zero-initialised output) with a learned tanh-bounded log-scale.
num_levels = 2 (a second squeeze to 7x7) is the deeper option; the checkerboard
couplings at full 28x28 resolution dominate the cost, which is why the width
is small on a CPU.
"""
from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "flow"

  c.model.kind = "realnvp"
  c.model.num_levels = 1           # squeeze + factor-out scales before the final scale
  c.model.couplings = (3, 3, 4)    # checkerboard, channel couplings per scale; checkerboard in the last
  c.model.width = 32               # conditioner ResNet channels
  c.model.num_blocks = 1           # residual blocks per conditioner
  c.model.norm = "layer"           # normalisation in the residual blocks: 'layer', 'group', 'none'
  c.model.scale_fn = "tanh"        # log s = scale * tanh(h), learned per-channel scale; or 'sigmoid'
  c.model.logit_alpha = 0.05       # y = logit(a + (1 - 2a) x)
  c.model.split_prior = False      # RealNVP factors out to N(0, I); True learns p(z2 | z1)
  c.model.learn_top = False
  c.model.class_conditional = False

  c.data.batch_size = 64
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 200
  c.optim.clip_norm = 50.0
  c.optim.ema_decay = 0.995

  c.eval.num_draws = 4             # dequantization draws averaged per test image

  c.train.num_steps = 2000
  c.train.log_every = 50
  c.train.checkpoint_every = 250
  # Its step's buffers (258 MiB per device) exceed what glibc keeps; used on glibc's malloc only
  # (train.malloc="glibc", or jemalloc not installed): README, "Page faults between steps".
  c.train.huge_pages = True

  c.sample.num = 64
  c.sample.temperature = 1.0

  if arg == "smoke":
    _smoke(c)
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/realnvp.py; use 'smoke' or nothing")
  return c


def _smoke(c):
  """A tiny RealNVP on scikit-learn digits (8x8 -> 4x4) that runs in seconds."""
  c.data.name = "digits"
  c.data.batch_size = 16
  c.model.width = 4
  c.optim.warmup_steps = 2
  c.train.num_steps = 4
  c.train.checkpoint_every = 2
  c.train.log_every = 1
  c.train.eval_examples = 32
  c.eval.num_examples = 32
  c.eval.batch_size = 32
  c.sample.num = 16
