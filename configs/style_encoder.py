"""The GAN's style encoder: a CNN that maps an image back to a frozen GAN's noise z (Reed et al. 2016).

  .venv/bin/python -m genfam.main --config=configs/style_encoder.py \
      --config.model.generator_workdir=runs/gan --workdir=runs/style_encoder

Trained by the one loop on G(z, c) samples of the frozen generator (z ~ N(0, I), c: each training
example's label or caption), never updating G. Not generative: it reports per test image the latent
error of generated images (headline latent_explained = 1 - latent_mse) and the pixel RMSE of redrawing
a real test image from its inferred style. Number: not yet measured. The maths:
genfam/families/auxiliary/style_encoder.py; the style-transfer pictures: experiments/studies/gan_style_transfer.py.
':smoke' is the tiny variant the tests run (it needs a configs/gan.py:smoke workdir).
"""
from genfam.settings import config_base


def get_config(arg=None):
  c = config_base.base_config()
  c.family = "style_encoder"
  c.data.batch_size = 64

  c.model.generator_workdir = ""     # a trained configs/gan.py workdir (label or caption GAN), same dataset
  c.model.channels = (32, 64)        # conv stages (3x3 convs, then 2x2 max pool): 28 -> 14 -> 7
  c.model.convs_per_stage = 1
  c.model.features = 128             # width before the linear map to R^L (L: the GAN's model.latent_dim)

  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.optim.decay_steps = 3000
  c.optim.clip_norm = 0.0

  c.train.num_steps = 3000
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.eval.batch_size = 250

  if arg == "smoke":
    c.data.name = "digits"
    c.data.batch_size = 16
    c.model.channels = (8, 16)
    c.model.features = 16
    c.optim.warmup_steps = 1
    c.optim.decay_steps = 0
    c.train.num_steps = 4
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.eval_examples = 32
    c.train.progress = False
    c.eval.batch_size = 32
    c.eval.num_examples = 64
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/style_encoder.py; use 'smoke' or nothing")
  return c
