"""RealNVP (Dinh et al. 2017) on Fashion-MNIST, sized for a 2-core CPU.

  .venv/bin/python -m genfam.main --config=configs/realnvp.py --workdir=runs/realnvp

Multi-scale and batch-norm free: logit preprocessing, checkerboard and channel affine couplings
whose networks are small ResNets (width 32). Headline: 3.797 +- 0.009 bits/dim (exact for the
dequantized density; all 10000 test images, 1 draw) after a short run of 600 steps of 64.
Command and the full story: docs/results.md, "RealNVP". ':smoke' is the tiny variant the tests run.
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
