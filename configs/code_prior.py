"""Code prior on Fashion-MNIST: stage 2 of DALL-E's two-stage recipe, a transformer over a VQ-VAE's codes.

  .venv/bin/python -m genfam.main --config=configs/vqvae.py --workdir=runs/vqvae            # stage 1
  .venv/bin/python -m genfam.main --config=configs/code_prior.py \
      --config.model.autoencoder_workdir=runs/vqvae --workdir=runs/code_prior              # stage 2
  .venv/bin/python -m genfam.main --config=configs/code_prior.py:caption \
      --config.model.autoencoder_workdir=runs/vqvae --workdir=runs/code_prior_caption      # | caption
  .venv/bin/python -m genfam.main --config=configs/code_prior.py:caption --mode=sample \
      --config.model.autoencoder_workdir=runs/vqvae --workdir=runs/code_prior_caption \
      --caption="a dark small trouser"

The image-GPT's transformer (width 128, 2 blocks, 4 heads) over the 7x7 codes of the frozen
stage-1 run (raster order, 49 positions of 512 values), with a label (':label') or caption
(':caption') prefix. Reports the two-stage bound (kind 'elbo', an upper bound on -log2 p(x) / D:
the stage-1 decoder's -log2 p(x | z*) plus the prior's exact -log2 p(z*), z* = e(x)). Not yet
measured at its 4000 steps; after 480 s (606 steps) on a 302-step vqvae, 3.590 +- 0.031 bits/dim on
the first 1000 test images (docs/two_stage.md, "a brief run"). docs/two_stage.md tells the rest;
':smoke' (':label_smoke', ':caption_smoke') is the tiny variant the tests run, on a
configs/vqvae.py:smoke workdir.
"""
from genfam.settings.config_base import base_config

VARIANTS = ("smoke", "label", "caption", "label_smoke", "caption_smoke")


def get_config(arg=None):
  if arg and arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of configs/code_prior.py; use one of {VARIANTS} or nothing")
  c = base_config()
  c.family = "code_prior"

  m = c.model
  m.autoencoder_workdir = ""        # the stage-1 run (a configs/vqvae.py workdir on the same dataset): required
  m.autoencoder_config = "vqvae"    # the family that trained it (genfam/loop/frozen.py checks the workdir holds one)
  m.width = 128                     # residual stream
  m.depth = 2                       # transformer blocks
  m.num_heads = 4
  m.mlp_ratio = 4                   # MLP hidden = mlp_ratio * width
  m.dropout = 0.0                   # on embeddings and residual branches (training only)
  m.dtype = "float32"               # matmul / attention / cache dtype: 'float32' or 'bfloat16'
  m.query_block = 0                 # 49 positions: one attention call
  m.condition = "none"              # prefix: 'none', 'label' or 'caption' (batch['caption'] tokens)
  m.class_conditional = False       # True = condition 'label'
  m.caption_dropout = 0.1           # caption models: P(training caption emptied); the empty caption = p(z)

  c.data.batch_size = 64
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 200
  c.optim.clip_norm = 1.0
  c.optim.ema_decay = 0.995

  c.train.num_steps = 4000
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.train.eval_examples = 500

  c.eval.batch_size = 128
  c.eval.num_examples = 0           # the whole test split

  c.sample.num = 64
  c.sample.conditional = False      # label models: labels 0..C-1 in columns
  c.sample.temperature = 1.0        # code logits / T
  c.sample.top_k = 0                # keep the k most likely codes; 0 = off (the model as trained)
  c.sample.sampler = "cached"       # 'cached' (key-value cache) or 'uncached' (full forward per code)
  c.sample.decode = "sample"        # stage-1 decoder: 'sample' draws p(x | z); 'mode': each pixel's likeliest bin

  if arg in ("label", "label_smoke"):
    m.condition = "label"
  if arg in ("caption", "caption_smoke"):
    m.condition = "caption"
  if arg and arg.endswith("smoke"):
    _smoke(c)
  return c


def _smoke(c):
  """A tiny prior on digits, over a configs/vqvae.py:smoke run's 4x4 codes of 16."""
  c.data.name = "digits"
  c.data.batch_size = 16
  c.model.width = 32
  c.model.depth = 2
  c.model.num_heads = 2
  c.optim.warmup_steps = 2
  c.train.num_steps = 4
  c.train.checkpoint_every = 2
  c.train.log_every = 1
  c.train.eval_examples = 32
  c.eval.num_examples = 32
  c.eval.batch_size = 32
  c.sample.num = 16
