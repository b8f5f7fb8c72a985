"""Glow (Kingma & Dhariwal 2018) on Fashion-MNIST, sized for a 2-core CPU.

Run:
  python -m genfam.main --config=configs/glow.py --workdir=runs/glow
  python -m genfam.main --config=configs/glow.py --mode=eval --workdir=runs/glow
  python -m genfam.main --config=configs/glow.py --mode=sample --workdir=runs/glow \
      --config.sample.temperature=0.7
  python -m genfam.main --config=configs/glow.py:smoke --workdir=/tmp/glow-smoke   # seconds, digits

Reaches: 3.659 +- 0.009 bits/dim (exact; all 10000 test images x 4
dequantization draws) after 6000 steps of 32 images (3.2 epochs), 38 minutes of
training on one core of a 2-core AVX-512 CPU (86 images/s), peak RSS 1.3 GiB:
  python -m genfam.main --config=configs/glow.py --config.train.num_steps=6000 \
      --config.train.checkpoint_every=500 --workdir=runs/glow
It was still improving (mean training-batch bits/dim, raw weights: 4.22 over
steps 1000-2000, 3.91 over 2000-3000, 3.75 over 5000-6000; the test number
uses the EMA weights); train longer by rerunning with a larger num_steps (it
resumes).

Architecture: L = 2 levels (28x28x1 -> squeeze 14x14x4 -> K steps -> split ->
squeeze 7x7x8 -> K steps), K = 8 steps of actnorm -> LU 1x1 conv -> affine
coupling (sigmoid(h + 2) scale), coupling network conv3x3-relu-conv1x1-relu-
ZeroConv3x3 of width 64, learned conditional split prior and learned top prior;
preprocessing x - 0.5 (log-det 0). 153k parameters. Batch 32.

Why: two levels are all 28x28 allows without padding (7 is odd). K, width and
batch were picked by a race at equal cost: every variant trains for the same
3 minutes of wall-clock on this 2-core CPU (train.max_train_seconds, compile
included), then test bits/dim on the first 2000 test images:
  python -m experiments.sweep --config=configs/glow.py --root=runs/sweep_glow --cores=2 \
    --common=train.num_steps=1000000,train.max_train_seconds=180,eval.num_examples=2000,train.checkpoint_every=2000 \
    --variant=k8w64b32: --variant=k8w32b32:model.width=32 \
    --variant=k4w32b32:model.num_steps=4,model.width=32 \
    --variant=k16w32b32:model.num_steps=16,model.width=32 \
    --variant=k8w32b64:model.width=32,data.batch_size=64
  K=8,  width 64, batch 32: 1030 steps, 4.284 +- 0.019   <- this config
  K=16, width 32, batch 32:  620 steps, 4.392
  K=8,  width 32, batch 32: 1114 steps, 4.430
  K=4,  width 32, batch 32: 2954 steps, 4.473
  K=8,  width 32, batch 64:  851 steps, 4.520
(the same 2000 images for all, so differences are tighter than the standard
errors). Capacity per step (width 64, or depth 16) beats more updates of a
smaller flow, and at a fixed budget more updates of 32 images beat fewer of 64.
Wall-clock races on a shared machine are noisy: a first K=8/width-32 attempt
got half the throughput (661 steps, 4.71) and was rerun. The default run (2000
steps of 32 images, about one epoch) trains for ~9 minutes here (118 images/s
on both cores, `python -m experiments.benchmark_speed`), then evaluates all
10000 test images x 4 draws (75 s on one core); train longer with
--config.train.num_steps.
`--config.model.class_conditional=True` makes the top prior class-conditional
(then `--config.sample.conditional=True` samples rows by label).
"""
from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "flow"

  c.model.kind = "glow"
  c.model.num_levels = 2           # L: squeezes; 28 -> 14 -> 7
  c.model.num_steps = 8            # K steps of (actnorm, 1x1 conv, coupling) per level
  c.model.width = 64               # hidden channels of the coupling networks
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

  c.eval.num_draws = 4             # dequantization draws averaged per test image

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
