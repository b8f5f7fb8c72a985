"""Glow (Kingma & Dhariwal 2018) on Fashion-MNIST, sized for a 2-core CPU.

Run:
  python -m genfam.main --config=configs/glow.py --workdir=runs/glow
  python -m genfam.main --config=configs/glow.py --mode=eval --workdir=runs/glow
  python -m genfam.main --config=configs/glow.py --mode=sample --workdir=runs/glow \
      --config.sample.temperature=0.7
  python -m genfam.main --config=configs/glow.py:smoke --workdir=/tmp/glow-smoke   # seconds, digits

Reaches: (to be measured)

Architecture: L = 2 levels (28x28x1 -> squeeze 14x14x4 -> K steps -> split ->
squeeze 7x7x8 -> K steps), K = 8 steps of actnorm -> LU 1x1 conv -> affine
coupling (sigmoid(h + 2) scale), coupling network conv3x3-relu-conv1x1-relu-
ZeroConv3x3 of width 32, learned conditional split prior and learned top prior;
preprocessing x - 0.5 (log-det 0). 62k parameters.

Why: two levels are all 28x28 allows without padding (7 is odd). On the 2-core
CPU (shared, so absolute rates are low) a 4-minute race of Glow variants on
Fashion-MNIST (batch 64, test bits/dim of 2000 images) gave
  K=8,  width 32: 341 img/s, 4.36      K=8,  width 64: 178 img/s, 4.86
  K=4,  width 32: 532 img/s, 4.56      K=4,  width 64: 297 img/s, 4.79
  K=16, width 32: 161 img/s, 4.73
and K=8, width 32 at batch 32 (twice the updates per image): 4.06. At CPU
budgets, updates matter more than width; depth K = 8 is the sweet spot between
4 (too shallow) and 16 (too slow). The default run (2000 steps of 32 images,
about one epoch) takes a few minutes; train longer with --config.train.num_steps.
`--config.model.class_conditional=True` makes the top prior class-conditional
(then `--config.sample.conditional=True` samples rows by label).
"""
from genfam.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "flow"

  c.model.kind = "glow"
  c.model.num_levels = 2           # L: squeezes; 28 -> 14 -> 7
  c.model.num_steps = 8            # K steps of (actnorm, 1x1 conv, coupling) per level
  c.model.width = 32               # hidden channels of the coupling networks
  c.model.lu = True                # LU-decomposed 1x1 conv (else plain, O(C^3) slogdet)
  c.model.lu_identity_init = False  # True: W = I at init (else a random rotation)
  c.model.scale_fn = "sigmoid"     # coupling scale: 'sigmoid' (sigmoid(h + 2)) or 'tanh' (learned bound)
  c.model.split_prior = True       # learned conditional prior p(z2 | z1) at each split
  c.model.learn_top = True         # learned top prior (per position and channel)
  c.model.class_conditional = False  # top prior conditioned on the label
  c.model.input_scale = 1.0        # preprocessing y = input_scale * (x - 0.5)

  c.data.batch_size = 32
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 200
  c.optim.clip_norm = 50.0
  c.optim.ema_decay = 0.995

  c.train.num_steps = 2000
  c.train.log_every = 50
  c.train.checkpoint_every = 250

  c.sample.num = 64
  c.sample.temperature = 1.0       # eps ~ N(0, T^2 I); 0.7 gives smoother-looking samples

  if arg == "smoke":
    _smoke(c)
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/glow.py; use 'smoke' or nothing")
  return c


def _smoke(c):
  """A tiny Glow on scikit-learn digits (8x8: 8 -> 4 -> 2) that runs in seconds."""
  c.data.name = "digits"
  c.data.batch_size = 16
  c.model.num_steps = 2
  c.model.width = 8
  c.optim.warmup_steps = 2
  c.train.num_steps = 4
  c.train.checkpoint_every = 2
  c.train.log_every = 1
  c.train.eval_examples = 32
  c.eval.num_examples = 32
  c.eval.batch_size = 32
  c.sample.num = 16
