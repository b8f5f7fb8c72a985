"""Improved DDPM (Nichol & Dhariwal 2021) on Fashion-MNIST: configs/ddpm.py with learned
variances, the hybrid loss L_simple + 0.001 L_vlb (stop-gradient on the mean in L_vlb)
and the cosine schedule; evaluated by the same full bound (all T terms, kind 'vlb').

Run:
  python -m genfam.main --config=configs/iddpm.py --workdir=runs/iddpm
  python -m genfam.main --config=configs/iddpm.py:smoke --workdir=/tmp/iddpm-smoke   # tiny, on digits

Everything else (U-Net, T = 1000, optimizer, EMA, evaluation, sampling) is
configs/ddpm.py's, so the two differ only in the objective, the variance and the
schedule. The U-Net has 2C output channels (eps and the variance's v). The decoder
variance (t = 1) is not learned: both endpoints there are beta-tilde_2 (Ho et al.'s
convention, kept so that v = 1 and v = 0 are exactly the fixed variances).

Schedule: cosine, as the paper pairs it with learned variances (its linear schedule
wastes the last steps on near-pure noise). configs/ddpm.py keeps the linear
schedule of its measured run. A short equal-wall-clock race (configs/ddpm.py's
docstring has its command and numbers: 71-75 steps each, inside the warm-up) put
this config first, 6.221 +- 0.144 bits/dim on the first 20 test images against
6.992 +- 0.150 for configs/ddpm.py (L_0: 1.573 against 2.152); too short to say
where converged runs end.

The smoke variant also switches on importance-sampled t (history of 2 values per
t, so it becomes active within the smoke run) to exercise the loss-squared
history that lives in the train state, through the resume test.
"""
from genfam.settings import config_files


def get_config(arg=None):
  c = config_files.load("ddpm", "smoke" if arg == "smoke" else "")
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
