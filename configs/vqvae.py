"""VQ-VAE on Fashion-MNIST: stage 1 of DALL-E's two-stage recipe (a 7x7 grid of codes from 512).

  .venv/bin/python -m genfam.main --config=configs/vqvae.py --workdir=runs/vqvae

Conv encoder to a 7x7 grid, nearest of a 512-entry codebook (straight-through, codebook and
commitment losses), decoder a discretized logistic mixture over the 256 grey levels. Reports
the ELBO under a uniform prior over codes (kind 'elbo', an upper bound: recon + 49 log2 512 / 784
= recon + 0.5625 bits/dim). Not yet measured at its 4000 steps; after 480 s (302 steps) on a shared
CPU, 3.977 +- 0.030 bits/dim on the first 1000 test images (docs/two_stage.md, "a brief run").
The prior over its codes is configs/code_prior.py (stage 2), which names this run's workdir.
docs/two_stage.md tells the rest; ':smoke' is the tiny variant the tests run (digits, a 4x4 grid
of 16 codes).
"""
from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "vqvae"

  c.data.batch_size = 64
  c.train.num_steps = 4000
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.optim.clip_norm = 100.0
  c.optim.ema_decay = 0.995     # evaluation, samples and the frozen model stage 2 loads use the EMA weights

  m = c.model
  m.widths = (32, 64, 64)       # channels per resolution level (28, 14, 7): the code grid is the last level's
  m.blocks = (0, 1, 2)          # residual blocks per level
  m.norm = "layer"              # in the residual blocks: 'layer', 'group' or 'none'
  m.codebook_size = 512         # N codes; the uniform prior costs h w log2 N bits per image
  m.code_dim = 32               # E, dimension of a code vector
  m.commitment = 0.25           # beta of the commitment loss ||z_e - sg(z_q)||^2
  m.decoder = "logistic_mixture"  # p(x | z): 'logistic_mixture', 'logistic' or 'gaussian' (all discretized)
  m.num_mixtures = 5
  m.min_log_scale = -7.0        # floor on the decoder's log-scales

  c.sample.decode = "sample"    # 'sample': draw p(x | z); 'mode': each pixel's most probable bin

  if arg == "smoke":
    c.data.name = "digits"
    c.data.batch_size = 16
    c.train.num_steps = 4
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.eval_examples = 32
    c.optim.warmup_steps = 1
    c.eval.num_examples = 32
    c.eval.batch_size = 32
    c.sample.num = 16
    m.widths = (8, 16)          # 8 -> 4: a 4x4 grid
    m.blocks = (0, 1)
    m.codebook_size = 16
    m.code_dim = 4
    m.num_mixtures = 2
  elif arg:
    raise ValueError(f"unknown configs/vqvae.py argument {arg!r}; use 'smoke' or nothing")
  return c
