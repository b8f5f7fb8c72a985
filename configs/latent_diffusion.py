"""Latent diffusion on Fashion-MNIST: stage 2 of Stable Diffusion's recipe, a VDM prior on the frozen
latents of a configs/latent_autoencoder.py run.

  .venv/bin/python -m genfam.main --config=configs/latent_autoencoder.py --workdir=runs/latent_autoencoder
  .venv/bin/python -m genfam.main --config=configs/latent_diffusion.py \
      --config.model.autoencoder_workdir=runs/latent_autoencoder --workdir=runs/latent_diffusion
  .venv/bin/python -m genfam.main --config=configs/latent_diffusion.py:caption \
      --config.model.autoencoder_workdir=runs/latent_autoencoder --config.model.text_encoder_workdir=runs/clip \
      --workdir=runs/latent_diffusion_caption                  # caption-conditional, classifier-free guidance

configs/ddpm.py's U-Net (one level: the 7 x 7 x 4 latent grid does not halve), optimizer, EMA and batch;
VDM's learned schedule (configs/vdm.py's keys). Its likelihood, 'lsgm-100t', is LSGM's upper bound on
-log2 p(x) / D: the stage-1 decoder, the encoder's negative entropy and the prior's continuous-time
bound on the latent density from 100 stratified t (':caption': -log p(x | caption)). Samples: DDIM in
latent space over sample.ddim_steps, guidance weight sample.guidance, then the stage-1 decoder.
Headline: not yet measured at a useful budget (5 minutes a stage: 4.078 +- 0.066 on 200 test images).
docs/two_stage.md, "Latent diffusion (Stable Diffusion's recipe)", tells the rest and its Measured
paragraph the commands. ':smoke' and ':caption_smoke' are the tiny variants the tests run (on a
configs/latent_autoencoder.py:smoke workdir, and for the caption a configs/clip.py:smoke one).
"""
import ml_collections

from genfam.settings import config_files

VARIANTS = ("", "smoke", "caption", "caption_smoke")


def get_config(arg=None):
  if (arg or "") not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of configs/latent_diffusion.py; use one of {VARIANTS[1:]} or nothing")
  smoke = bool(arg) and arg.endswith("smoke")
  c = config_files.load("ddpm", arg or "", beside=__file__)    # configs/ddpm.py (its caption keys included)
  c.family = "latent_diffusion"
  m = c.model
  m.autoencoder_workdir = ""                # a configs/latent_autoencoder.py workdir on the same dataset (stage 1)
  m.autoencoder_config = "latent_autoencoder"
  m.class_conditional = False
  m.p_uncond = 0.1 if m.condition == "caption" else 0.0   # null-embedding dropout (classifier-free guidance)
  m.channel_mult = (1,)                     # the latent grid (7 x 7; 4 x 4 for the smoke) is not halved
  m.num_res_blocks = 1 if smoke else 2
  m.base_channels = 16 if smoke else 64
  m.num_groups = 4 if smoke else 8          # channels per group > 1: a group norm of one channel would remove the
                                            # time and caption embedding (a per-channel shift) it follows
  m.attn_resolutions = (4,) if smoke else (7,)
  m.dropout = 0.1

  c.diffusion = ml_collections.ConfigDict()
  c.diffusion.schedule = "learned"          # gamma(t): 'learned' (VDM's monotone network) or 'fixed' (linear)
  c.diffusion.gamma_min = -10.0             # gamma(0): noise std exp(-5) = 0.007 of the latent's unit scale
  c.diffusion.gamma_max = 5.0               # gamma(1): alpha_1^2 = sigmoid(-5) = 0.0067
  c.diffusion.gamma_width = 8 if smoke else 64
  c.diffusion.eval_t = 4 if smoke else 100  # stratified t per test image in the bound's estimate
  c.diffusion.bound_condition = "caption" if m.condition == "caption" else "null"
  for key in [k for k in c.eval if k.startswith("is_")]:       # DDPM's importance-sampled bound is not this one
    del c.eval[key]

  sample = ml_collections.ConfigDict()
  sample.num = c.sample.num
  sample.conditional = c.sample.conditional and m.condition == "caption"
  sample.ddim_steps = c.sample.ddim_steps   # S: DDIM steps in latent space (ddpm.py's: the speed comparison's)
  sample.eta = 0.0                          # DDIM: 0 deterministic, 1 = DDPM-like noise
  sample.guidance = 1.0                     # w: eps_null + w (eps_cond - eps_null); 1 = conditional, 0 = unconditional
  sample.decode = "mode"                    # stage-1 decoder: 'mode' (each pixel's most probable bin) or 'sample'
  c.sample = sample
  return c
