"""Image-GPT on Fashion-MNIST: a decoder-only transformer over the 784 pixels, exact likelihood.

  .venv/bin/python -m genfam.main --config=configs/igpt.py --workdir=runs/igpt
  .venv/bin/python -m genfam.main --config=configs/igpt.py --config.model.class_conditional=True \
      --config.sample.conditional=True --workdir=runs/igpt_label        # -log p(x | label), rows by label

Width 128, 2 blocks, 4 heads (0.56M parameters), causal attention in blocks of
model.query_block rows: the winner of an equal-budget race of three architectures
(`--config.model.depth=4` is issue 9's minGPT reference, 0.96M). Headline: 3.231 +- 0.029
bits/dim (exact, first 1000 test images) after 1200 s on one core in that race; at depth 4,
3.267 +- 0.029 after a 70-minute budget. Commands and the full story: docs/results.md,
"Image-GPT"; its training speed against minGPT: docs/performance.md. ':smoke' is the tiny
variant the tests run.
"""
from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "igpt"

  c.model.width = 128               # residual stream
  c.model.depth = 2                 # transformer blocks (won the equal-budget race of the docstring)
  c.model.num_heads = 4
  c.model.mlp_ratio = 4             # MLP hidden = mlp_ratio * width
  c.model.dropout = 0.0             # on embeddings and residual branches (training only)
  c.model.dtype = "float32"         # matmul / attention / cache dtype: 'float32' or 'bfloat16'
  c.model.query_block = 196         # causal attention in blocks of 196 query rows, skipping keys above the
                                    # diagonal blocks (CPU: 1.9x one call); 0 = one call (fused kernels on GPU)
  c.model.condition = "none"        # prefix: 'none', 'label' or 'caption' (batch['caption'] tokens)
  c.model.class_conditional = False  # True = condition 'label' (a label token in front)
  c.model.caption_dropout = 0.1     # caption models: P(training caption emptied); the empty caption = p(x)

  c.data.batch_size = 16
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 200
  c.optim.clip_norm = 1.0
  c.optim.ema_decay = 0.995

  c.train.num_steps = 4000
  c.train.log_every = 50
  c.train.checkpoint_every = 250
  # Its step's buffers exceed what glibc keeps; used on glibc's malloc only
  # (train.malloc="glibc", or jemalloc not installed): README, "Page faults between steps".
  c.train.huge_pages = True
  c.train.eval_examples = 500

  c.eval.batch_size = 32            # attention over 784 positions: [32, 4, 784, 784] floats per layer
  c.eval.num_examples = 0           # the whole test split

  c.sample.num = 64
  c.sample.conditional = False      # label models: labels 0..C-1 in columns
  c.sample.temperature = 1.0        # logits / T
  c.sample.top_k = 0                # keep the k most likely grey levels; 0 = off (the model as trained)
  c.sample.sampler = "cached"       # 'cached' (key-value cache) or 'uncached' (full forward per pixel)

  if arg == "smoke":
    _smoke(c)
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/igpt.py; use 'smoke' or nothing")
  return c


def _smoke(c):
  """A tiny image-GPT on scikit-learn digits (8x8, 17 grey levels: 64 tokens)."""
  c.data.name = "digits"
  c.data.batch_size = 16
  c.model.width = 32
  c.model.depth = 2
  c.model.num_heads = 2
  c.model.query_block = 24          # 65 positions in 3 blocks: the blocked attention runs end to end
  c.optim.warmup_steps = 2
  c.train.num_steps = 4
  c.train.checkpoint_every = 2
  c.train.log_every = 1
  c.train.eval_examples = 32
  c.eval.num_examples = 32
  c.eval.batch_size = 32
  c.sample.num = 16
