"""VDM (Kingma et al. 2021) on Fashion-MNIST: continuous-time variational diffusion trained on its bound.

  .venv/bin/python -m genfam.main --config=configs/vdm.py --workdir=runs/vdm

configs/ddpm.py's U-Net, optimizer, EMA and batch (unconditional) with a learned noise schedule;
its likelihood, 'vlb-continuous-100t', is an unbiased 100-t estimate of the continuous-time bound.
Headline: 3.390 +- 0.099 bits/dim on the first 50 test images after 2500 steps of 32, the lowest
of the equal-cost diffusion race (improved DDPM 3.481, DDPM 3.829). Command and the full story:
docs/results.md, "Diffusion" and "VDM". ':smoke' is the tiny variant the tests run.
"""
import ml_collections

from genfam.settings import config_files


def get_config(arg=None):
  c = config_files.load("ddpm", "smoke" if arg == "smoke" else "", beside=__file__)   # configs/ddpm.py
  c.family = "vdm"
  c.model.class_conditional = False
  c.model.p_uncond = 0.0
  c.sample.conditional = False
  c.diffusion = ml_collections.ConfigDict()
  c.diffusion.schedule = "learned"   # 'learned' (monotone network) or 'fixed' (linear gamma)
  c.diffusion.gamma_min = -13.3      # gamma(0): sigma_0 / alpha_0 = exp(-6.65) = 0.0013 (1/3 of a 256-bin half-width)
  c.diffusion.gamma_max = 5.0        # gamma(1): alpha_1^2 = sigmoid(-5) = 0.0067
  c.diffusion.gamma_width = 64       # hidden units of the monotone gamma network
  c.diffusion.eval_t = 100           # stratified t per test image in the bound's estimate
  sample = ml_collections.ConfigDict()
  sample.num = c.sample.num
  sample.conditional = False
  sample.steps = 200                 # ancestral steps of t in [0, 1]
  c.sample = sample
  # DDPM's importance-sampled bound (eval.is_*) is not VDM's: its continuous-time estimate already spends
  # under 1% of its variance on t at eval_t = 100 stratified t, and the integrand's RMS is nearly flat in t
  # (measured: python -m experiments.studies.diffusion_importance vdm), so IS over t would buy nothing.
  for key in [k for k in c.eval if k.startswith("is_")]:
    del c.eval[key]
  if arg == "smoke":
    c.diffusion.gamma_width = 8
    c.diffusion.eval_t = 4
    c.sample.steps = 5
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/vdm.py; use 'smoke' or nothing")
  return c
