"""Latent autoencoder on Fashion-MNIST: stage 1 of latent diffusion (Stable Diffusion's recipe).

  .venv/bin/python -m genfam.main --config=configs/latent_autoencoder.py --workdir=runs/latent_autoencoder

configs/vae.py's networks, pixel decoder, optimizer and batch with a spatial 7 x 7 x 4 Gaussian latent
(no dense bottleneck), trained on reconstruction + beta KL with beta = model.kl_weight = 0.01; it
reports the honest beta = 1 ELBO (kind 'elbo', an upper bound). Stage 2 (configs/latent_diffusion.py)
trains a diffusion prior on its latents. Headline: not yet measured at a useful budget (5 minutes:
ELBO 4.586 +- 0.041 on 500 test images). docs/two_stage.md, "Latent diffusion (Stable Diffusion's
recipe)", tells the rest and its Measured paragraph the command. ':smoke' is the tiny variant the tests
run (digits, a 4 x 4 x 2 latent).
"""
from genfam.settings import config_files


def get_config(arg=None):
  if arg not in (None, "", "smoke"):
    raise ValueError(f"unknown configs/latent_autoencoder.py argument {arg!r}; use 'smoke' or nothing")
  c = config_files.load("vae", arg or "", beside=__file__)    # configs/vae.py
  c.family = "latent_autoencoder"
  m = c.model
  for key in ("latent_dim", "kl_warmup_steps", "free_bits", "class_conditional", "active_threshold"):
    del m[key]
  for key in ("iwae_k", "iwae_chunk"):
    del c.eval[key]
  c.eval.extra_num_examples = 0
  m.latent_channels = 2 if arg == "smoke" else 4   # c of the h x w x c latent grid (h x w: the last level's size,
                                                   # 7 x 7 for 28 x 28 with three levels; 4 x 4 for the smoke's 8 x 8)
  m.kl_weight = 0.01              # beta of the training loss recon + beta KL (the reported ELBO is beta = 1's)
  c.sample.temperature = 1.0      # std of z ~ N(0, I) for this run's own (stage-1 prior) samples
  return c
