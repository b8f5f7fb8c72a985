"""Conditional GAN (GAN-CLS + GAN-INT, Reed et al. 2016) on Fashion-MNIST, likelihood by AIS.

Run:
  python -m genfam.main --config=configs/gan.py --workdir=runs/gan                 # label-conditional
  python -m genfam.main --config=configs/gan.py:caption \\
      --config.model.text_encoder_workdir=runs/clip --workdir=runs/gan_caption     # caption-conditional
  python -m genfam.main --config=configs/gan.py:smoke --workdir=/tmp/gan_smoke     # tiny, on digits
sigma^2 of the AIS observation model, chosen on validation images carved from
the TRAIN split (never test), then the evaluation with it:
  python -m experiments.gan_ais_sigma --config=configs/gan.py --workdir=runs/gan
  python -m genfam.main --config=configs/gan.py --workdir=runs/gan --mode=eval --config.eval.ais_sigma2=<chosen>
GAN-INT's interpolation grid between two captions (or labels):
  python -m experiments.gan_interpolation --config=configs/gan.py --workdir=runs/gan --a=0 --b=9

The test bits/dim is an AIS estimate (kind 'ais') of -log p(x | label) (or
| caption) under p(y | z, c) = N(G_ema(z, c), sigma^2 I) on dequantized y:
a stochastic upper bound on the model's bits/dim, tighter with more
intermediate distributions (eval.ais_steps) and chains (eval.ais_chains);
the report states sigma2, ais_steps, ais_chains and the number of test images.
AIS costs ais_steps x (ais_chains + ais_adapt_chains) x (ais_leapfrog + 1)
generator forward+backward passes per test image (100 x 5 x 11 = 5500 with
the defaults), so the default evaluates the first 100 test images.

Measured before data.validation_examples existed (the run trained on the whole train
split and sigma^2 was chosen on its last 16 images; rerun to reproduce with the
held-out split). A short CPU run on one shared core: NOT a converged GAN; the samples
after 186 steps are class-dependent blobs, not yet clothes):
  python -m genfam.main --config=configs/gan.py --config.train.progress=False \
      --config.train.num_steps=350 --config.train.log_every=25 --config.train.checkpoint_every=175 \
      --config.eval.num_examples=2 --config.eval.batch_size=2 --config.eval.ais_steps=5 --workdir=runs/gan
  stopped (SIGTERM, checkpointed) at step 186 of 64 images: 37 images/s on a quiet
  core in a 40-step trial, ~1 step per 3 s with the machine loaded.
  sigma^2 on the last 16 TRAIN images, AIS 30 steps x 2 chains (+1 pilot):
  python -m experiments.gan_ais_sigma --workdir=runs/gan --grid=0.005,0.01,0.02 --num=16 --steps=30 --chains=2 --batch_size=16
    sigma^2 0.005: 11.15 +- 1.02, 0.01: 8.91 +- 0.52, 0.02: 8.02 +- 0.26 bits/dim -> 0.02
    (the edge of this grid: a wider grid may choose a larger sigma^2)
  test AIS with it, first 20 test images, 50 steps x 2 chains (+1 pilot), 385 s:
  python -m genfam.main --config=configs/gan.py --workdir=runs/gan --mode=eval --config.eval.ais_sigma2=0.02 \
      --config.eval.num_examples=20 --config.eval.batch_size=20 --config.eval.ais_steps=50 --config.eval.ais_chains=2
    ais, -log p(x | label): 8.085 +- 0.186 bits/dim (density 0.085 + discretization 8.000),
    HMC acceptance 0.58: worse than a uniform density (8 bits/dim) for this
    undertrained G and so short a schedule (a stochastic upper bound, loose here).
  R1 (gamma 1) vs none, the same 186 steps (--config.model.r1_gamma=0, workdir runs/gan_nor1),
  mean over the train rows logged at steps 100-186: D loss (GAN part) 1.158 vs 1.134,
  G loss 0.923 vs 1.012, D accuracy real/wrong/fake 0.72/0.62/0.98 vs 0.71/0.62/0.98,
  sample_diversity 0.745 vs 0.686, D gradient norm 1.70 vs 2.91; 200 EMA samples
  (labels 0..9): mean L2 distance to the nearest of 5000 train images 6.28 vs 6.20
  (test images: 4.19), two z of the same label 8.47 vs 8.43. At this length R1
  only lowers D's gradient norm; no effect on the losses or samples is measurable.

In the cross-family comparison (README; 4 minutes on one core each, sigma^2 =
0.01, AIS 50 steps x 2 chains (+1 pilot) on the first 25 test images):
  gan (label):         441 steps, 8.048 +- 0.206 bits/dim, FID 480 (floor 48), class agreement 0.775 (real 0.895)
  gan:caption (CLIP):  471 steps, 8.091 +- 0.212 bits/dim, FID 475, class agreement 0.370, CLIP cosine 0.426 (real 0.643)
  BDMC on 8 images simulated from the caption GAN (experiments.gan_bdmc --steps=10,50):
  gap 0.344 +- 0.080 bits/dim at T = 10, 0.081 +- 0.012 at T = 50.
  sigma^2 chosen for gan:caption on 16 held-out validation images (gan_ais_sigma, 30 x 2): 0.04
  (the grid's edge); test AIS with it (50 x 2, first 25): 7.627 +- 0.060; BDMC gap 0.032 +- 0.006 at T = 50.
Training speed (experiments.benchmark_speed, quiet, 2 cores): 242.8 images/s.
"""
from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "gan"
  c.data.batch_size = 64
  c.data.validation_examples = 1000    # held out of training: where sigma^2 is chosen (never on test)

  m = c.model
  m.condition = "label"          # 'label' (one-hot) or 'caption' (frozen CLIP text embedding)
  m.text_encoder_workdir = ""    # a configs/clip.py workdir (caption conditioning)
  m.latent_dim = 32
  m.g_channels = 16              # G channels at full resolution (x2 per level down)
  m.d_channels = 16
  m.num_levels = 2               # halvings: 28 -> 7, 32 -> 8, 8 -> 2 (no padding)
  m.cond_features = 64           # width of the projected condition in G and D
  m.r1_gamma = 1.0               # R1 penalty weight on real matching pairs (0 disables it)
  m.gan_int = True               # GAN-INT: G also trained on interpolated conditions (beta = 0.5)
  m.gan_int_weight = 1.0
  m.collapse_threshold = 0.1     # alert_mode_collapse when sample_diversity falls below this

  c.optim.learning_rate = 2e-4   # G (Adam, DCGAN's betas)
  c.optim.d_learning_rate = 2e-4  # D
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.warmup_steps = 0
  c.optim.clip_norm = 0.0
  c.optim.ema_decay = 0.999      # G's EMA, used for evaluation and sampling

  c.train.num_steps = 3000
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.train.eval_examples = 20

  c.eval.batch_size = 50
  c.eval.num_examples = 100      # AIS is the slowest evaluation in the project
  c.eval.ais_sigma2 = 0.01       # observation variance; choose with experiments/gan_ais_sigma.py
  c.eval.ais_sigma2_grid = (0.0025, 0.005, 0.01, 0.02, 0.04)   # candidates of experiments/gan_ais_sigma.py
  c.eval.ais_validation_examples = 50   # how many of the held-out validation images choose sigma^2
  c.eval.ais_steps = 100         # intermediate distributions T (sigmoid schedule)
  c.eval.ais_chains = 4          # chains per image, combined by log-mean-exp
  c.eval.ais_adapt_chains = 1    # pilot chains per image that adapt the HMC step size (weights unused)
  c.eval.ais_leapfrog = 10       # leapfrog steps per HMC transition
  c.eval.ais_step_size = 0.05    # initial HMC step size

  c.sample.num = 100
  c.sample.conditional = True    # labels 0..C-1 by column
  c.sample.temperature = 1.0

  if arg in ("caption", "caption_smoke"):
    m.condition = "caption"
  if arg in ("smoke", "caption_smoke"):
    c.data.name = "digits"
    c.data.batch_size = 16
    c.data.validation_examples = 16
    c.train.num_steps = 4
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.eval_examples = 8
    c.eval.batch_size = 8
    c.eval.num_examples = 8
    c.eval.ais_steps = 4
    c.eval.ais_chains = 2
    c.eval.ais_leapfrog = 2
    c.eval.ais_validation_examples = 8
    c.sample.num = 20
    m.latent_dim = 8
    m.g_channels = 8
    m.d_channels = 8
    m.cond_features = 8
  elif arg and arg != "caption":
    raise ValueError(f"unknown configs/gan.py argument {arg!r}; use 'smoke', 'caption', 'caption_smoke' or nothing")
  return c
