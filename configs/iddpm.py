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

Schedule: cosine, the winner of an equal-cost race (2500 steps of 32 images each,
the network and everything else equal; full bound, all 1000 terms, on the same
first 50 test images, the images of configs/ddpm.py's measured run):
  | config | schedule | variances | bits/dim (vlb) | L_0 (decoder) | L_1..L_999 | train time |
  | configs/ddpm.py  | linear | fixed (beta_t) | 3.829 +- 0.109 | 1.665 | 2.160 | 94 min, loaded |
  | configs/iddpm.py, schedule=linear | linear | learned | 3.592 +- 0.098 | 1.666 | 1.922 | 36 min |
  | configs/iddpm.py (default) | cosine | learned | 3.481 +- 0.099 | 1.248 | 2.229 | 61 min, shared core |
  python -m genfam.main --config=configs/iddpm.py --config.data.batch_size=32 \
      --config.train.num_steps=2500 --config.eval.num_examples=50 --workdir=runs/iddpm
  python -m genfam.main --config=configs/iddpm.py --config.diffusion.schedule=linear \
      --config.data.batch_size=32 --config.train.num_steps=2500 --config.eval.num_examples=50 \
      --workdir=runs/iddpm_linear
(one core each, `taskset`, the other core running the other run; prior and label
terms 0.000 and 0.004 in each). Learned variances alone take 0.24 bits/dim off
the diffusion terms; the cosine schedule takes 0.42 off the decoder term L_0
(its first step adds noise of standard deviation sqrt(beta_1) = 0.0064 against the
linear schedule's 0.0100, nearer a grey level's half-width of 0.0039, so x_1
pins x_0 more often) and gives back 0.31 in
the diffusion terms, 0.11 bits/dim better in total. The +- are each mean's
standard error over images, shared by all rows (same images), not the error of a
difference. Samples: experiments/results/iddpm/.
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
