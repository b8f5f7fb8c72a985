"""Conditional GAN (GAN-CLS + GAN-INT, Reed et al. 2016) on Fashion-MNIST, likelihood by AIS.

  .venv/bin/python -m genfam.main --config=configs/gan.py --workdir=runs/gan                 # label-conditional
  .venv/bin/python -m genfam.main --config=configs/gan.py:caption \
      --config.model.text_encoder_workdir=runs/clip --workdir=runs/gan_caption     # caption-conditional

The test bits/dim is an AIS estimate (kind 'ais', a stochastic upper bound) of -log p(x | label)
(or | caption) under p(y | z, c) = N(G_ema(z, c), sigma^2 I), with sigma^2 chosen on validation
images held out of the train split (never test): `python -m experiments.studies.gan_ais_sigma`.
Headline: the 4-minute comparison's caption GAN, 7.627 +- 0.060 bits/dim (ais at sigma^2 = 0.04,
first 25 test images), its AIS checked by BDMC (gap 0.032 +- 0.005 bits/dim). Commands and the
full story: docs/comparison.md, "Checking the GAN's AIS bound", and docs/results.md, "GAN".
':smoke' is the tiny variant the tests run.
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
  c.eval.ais_sigma2 = 0.01       # observation variance; choose with experiments/studies/gan_ais_sigma.py
  c.eval.ais_sigma2_grid = (0.0025, 0.005, 0.01, 0.02, 0.04)   # candidates of experiments/studies/gan_ais_sigma.py
  c.eval.ais_validation_examples = 50   # how many of the held-out validation images choose sigma^2
  c.eval.ais_steps = 100         # intermediate distributions T (sigmoid schedule)
  c.eval.ais_chains = 4          # chains per image, combined by log-mean-exp
  c.eval.ais_adapt_chains = 1    # pilot chains per image that adapt the HMC step size (weights unused)
  c.eval.ais_leapfrog = 10       # leapfrog steps per HMC transition
  c.eval.ais_step_size = 0.05    # initial HMC step size

  c.sample.num = 100
  c.sample.conditional = True    # labels 0..C-1 by column
  c.sample.temperature = 1.0     # z = T u: the noise scale
  c.sample.truncation = 0.0      # tau > 0: u ~ N(0, 1) truncated to |u_i| <= tau (the truncation trick); 0 = off

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
