"""Improved DDPM (Nichol & Dhariwal 2021) on Fashion-MNIST: configs/ddpm.py with learned
variances, the hybrid loss L_simple + 0.001 L_vlb and the cosine schedule; evaluated by the same
full bound (all T terms, kind 'vlb').

  .venv/bin/python -m genfam.main --config=configs/iddpm.py --workdir=runs/iddpm

Headline: 3.481 +- 0.099 bits/dim (vlb) on the first 50 test images after 2500 steps of 32,
against 3.829 for configs/ddpm.py at equal cost: the winner of the schedule and variance race.
Command, the race and the full story: docs/results.md, "Diffusion".
The smoke variant also switches on importance-sampled t (history of 2 values per
t, so it becomes active within the smoke run) to exercise the loss-squared
history that lives in the train state, through the resume test.
"""
from genfam.settings import config_files


def get_config(arg=None):
  c = config_files.load("ddpm", "smoke" if arg == "smoke" else "", beside=__file__)   # configs/ddpm.py
  c.diffusion.schedule = "cosine"
  c.diffusion.variance = "learned"
  c.diffusion.loss = "hybrid"
  c.diffusion.hybrid_lambda = 0.001
  if arg == "smoke":
    c.diffusion.t_sampling = "importance"
    c.diffusion.loss_history = 2
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/iddpm.py; use 'smoke' or nothing")
  return c
