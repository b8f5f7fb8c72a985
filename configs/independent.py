"""Independent-pixel categorical baseline: the bits/dim of ignoring all structure.

  .venv/bin/python -m genfam.main --config=configs/independent.py --workdir=runs/independent

Headline: 4.709 +- 0.198 bits/dim (exact) on the first 25 test images after 4 minutes of
training, in the cross-family comparison (command and table: docs/comparison.md).
':smoke' is the tiny variant the tests run.
"""
from genfam.settings import config_base


def get_config(arg=None):
  c = config_base.base_config()
  c.family = "independent"
  c.model.class_conditional = False
  c.data.batch_size = 256
  c.train.num_steps = 2000
  c.train.checkpoint_every = 1000
  c.optim.learning_rate = 3e-2
  c.optim.warmup_steps = 0
  c.optim.clip_norm = 0.0
  c.sample.conditional = False
  if arg == "smoke":
    c.data.name = "digits"
    c.data.batch_size = 16
    c.train.num_steps = 6
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.eval_every = 3
    c.train.eval_examples = 32
    c.train.progress = False
    c.eval.num_examples = 64
    c.eval.batch_size = 32
    c.sample.num = 16
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/independent.py; use '' or 'smoke'")
  return c
