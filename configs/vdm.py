"""VDM (Kingma et al. 2021) on Fashion-MNIST: continuous-time variational diffusion trained on its bound.

Run:
  python -m genfam.main --config=configs/vdm.py --workdir=runs/vdm
  python -m genfam.main --config=configs/vdm.py --mode=sample --workdir=runs/vdm
  python -m genfam.main --config=configs/vdm.py:smoke --workdir=/tmp/vdm-smoke   # tiny, on digits, seconds

Likelihood: 'vlb-continuous-100t', a stochastic unbiased estimate (100 stratified t
per test image) of the continuous-time bound prior + reconstruction + diffusion
loss, in bits/dim of the K-bin data as DDPM's bound (x on K bin centres in [-1, 1],
the reconstruction a discretized Gaussian over the K bins, D stored pixels). It
costs 100 network passes per image (DDPM's full bound: 1000). Unconditional.

The U-Net, optimizer, EMA and batch are configs/ddpm.py's (class conditioning off),
so VDM and DDPM differ in the process and the objective, not the network. Noise
schedule: 'learned' (a monotone network for gamma(t) and learned endpoints, starting
as the fixed linear gamma from -13.3 to 5, VDM's values) or 'fixed' (that linear gamma).
Measured (one core of the 2-core CPU, `taskset`, the other core running other jobs),
at the cost of configs/iddpm.py's schedule race (2500 steps of 32 images) and on its
test images (the first 50):
  python -m genfam.main --config=configs/vdm.py --config.data.batch_size=32 \
      --config.train.num_steps=2500 --config.eval.num_examples=50 --workdir=runs/vdm
reaches 3.390 +- 0.099 bits/dim (vlb-continuous-100t: prior 0.004, reconstruction
0.433, diffusion loss 2.953) in 42 min (33 images/s), peak RSS 2.0 GiB; against
3.481 for improved DDPM (cosine, learned variances; an exact 1000-term sum) and
3.829 for DDPM on the same images. The +- is the standard error over images;
VDM's 100 stratified t per image add a little estimator noise on top. Samples:
experiments/results/vdm/. Earlier, in configs/ddpm.py's 1200 s race on a shared
core, it reached only 2 steps (13.226, an untrained model's).
"""
import ml_collections

from genfam.settings import config_files


def get_config(arg=None):
  c = config_files.load("ddpm", "smoke" if arg == "smoke" else "")
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
  if arg == "smoke":
    c.diffusion.gamma_width = 8
    c.diffusion.eval_t = 4
    c.sample.steps = 5
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/vdm.py; use 'smoke' or nothing")
  return c
