"""DDPM on Fashion-MNIST: trained on L_simple, evaluated by its full bound (all T = 1000 terms).

  .venv/bin/python -m genfam.main --config=configs/ddpm.py --workdir=runs/ddpm
  .venv/bin/python -m genfam.main --config=configs/ddpm.py:caption \
      --config.model.text_encoder_workdir=runs/clip --workdir=runs/ddpm_caption   # caption-conditional

A U-Net of 1.1M parameters, Ho et al.'s linear schedule and fixed posterior variances,
class-conditional with classifier-free guidance (the bound is the label mixture's). ':caption'
conditions on a configs/clip.py workdir's frozen text embedding of the caption (':caption_smoke'
is the same on digits, tiny; its text_encoder_workdir is a configs/clip.py:smoke workdir).
Headline: 3.829 +- 0.109 bits/dim (vlb) on the first 50 test images after 2500 steps of 32;
at equal cost configs/iddpm.py reaches 3.481 and configs/vdm.py 3.390. Command and the full story:
docs/results.md, "Diffusion"; an opt-in XLA:CPU flag for faster CPU training and evaluation:
docs/performance.md, "Weight gradients and YNNPACK". ':smoke' is the tiny variant the tests run.
"""
import ml_collections

from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "diffusion"
  c.data.batch_size = 64

  c.model.base_channels = 32
  c.model.channel_mult = (1, 2, 2)
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = (7,)
  c.model.dropout = 0.1
  c.model.num_heads = 1
  c.model.num_groups = 8
  c.model.class_conditional = True   # label embedding + learned null label
  c.model.p_uncond = 0.1             # null-label dropout in training (classifier-free guidance)
  c.model.condition = ""             # 'caption': the frozen CLIP text embedding instead (exclusive with labels)
  c.model.text_encoder_workdir = ""  # a configs/clip.py workdir on the same dataset (caption condition)

  c.diffusion = ml_collections.ConfigDict()
  c.diffusion.num_steps = 1000        # T
  c.diffusion.schedule = "linear"     # 'linear' (Ho et al.) or 'cosine' (Nichol & Dhariwal)
  c.diffusion.variance = "posterior"  # sigma_t^2: 'posterior' (beta-tilde_t), 'beta' (beta_t) or 'learned'
  c.diffusion.loss = "simple"         # 'simple' (L_simple), 'hybrid' (+ lambda L_vlb; learned variance) or 'vlb'
  c.diffusion.hybrid_lambda = 0.001   # lambda of the hybrid loss (Nichol & Dhariwal)
  c.diffusion.t_sampling = "uniform"  # t for the loss: 'uniform' or 'importance' (p_t ~ sqrt(E[L_t^2]); hybrid/vlb)
  c.diffusion.loss_history = 10       # L_t values kept per t for importance sampling
  c.diffusion.clip_denoised = True    # clip x_0-hat to [-1, 1] in sampling and in the bound
  c.diffusion.bound_condition = "label"  # 'label': -log p(x|y) + log C; 'caption': -log p(x|caption); 'null': none
  c.diffusion.vlb_chunk = 2           # timesteps evaluated at once in the bound (memory ~ chunk x batch): on
                                      # the CPU 2 or 1 (25-50 network inputs per call) ran the bound 1.27x faster
                                      # than 8 and 1.56x faster than 40 (README "Where the time goes, two cores, and
                                      # evaluation speed"); a GPU wants more
  c.diffusion.sampled_t = 50          # extra unbiased estimate from this many t (0: off)

  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 200
  c.optim.clip_norm = 1.0
  c.optim.ema_decay = 0.995            # window ~200 steps (warmed up over the first ~1800)

  c.train.num_steps = 2000
  c.train.log_every = 50
  c.train.checkpoint_every = 250
  # Its step's buffers (271 MiB per device) exceed what glibc keeps; used on glibc's malloc only
  # (train.malloc="glibc", or jemalloc not installed): README, "Page faults between steps".
  c.train.huge_pages = True
  c.train.eval_examples = 32          # evaluations during training use few images (the bound is costly)

  c.eval.batch_size = 25
  c.eval.num_examples = 100
  # 'vlb-is-<k>t': the full bound's unbiased importance-sampled estimate (genfam/diffusion/importance.py),
  # prior and L_0 exact, k stratified t per image from q(t) ~ sqrt(E[L_t^2]) of a pilot on training images
  c.eval.is_timesteps = 10            # k (0: off); k + 1 network passes per image against the full bound's T
  c.eval.is_pilot_examples = 8        # pilot images (validation split if any, else the first training images)
  c.eval.is_pilot_timesteps = 64      # pilot grid of t (half geometric, half even; 0: all T - 1)
  c.eval.is_uniform_share = 0.1       # q = (1 - u) pilot + u uniform: importance weights <= (T - 1) / u
  c.eval.is_sampling = "stratified"   # 'stratified' (one t per stratum of q's CDF) or 'iid'
  c.eval.is_main = True               # vlb-is is the main likelihood (training-time evaluations cost 11 passes
                                      # per image, not 1000) and the full bound 'vlb' an extra on the first
                                      # eval.extra_num_examples (0: as many), reported beside it on those images

  c.sample.num = 60
  c.sample.conditional = True         # labels 0..9 in columns: samples of the mixture whose bound is reported
  c.sample.sampler = "ddim"           # 'ddim' or 'ddpm' (T = 1000 network calls per image: ~10x slower)
  c.sample.ddim_steps = 100           # S
  c.sample.eta = 0.0                  # DDIM: 0 deterministic, 1 = DDPM-like noise
  c.sample.spacing = "trailing"       # DDIM timesteps: 'linspace', 'leading' or 'trailing'
  c.sample.guidance = 1.0             # w: eps_null + w (eps_cond - eps_null); 1 = plain conditional, 0 = unconditional
  # Gradient guidance (docs/guidance.md): 'free' (classifier-free only: w above), 'classifier' (+ s grad log p(y|x_t)
  # of a configs/classifier.py:noisy workdir; needs labels) or 'clip' (+ s grad of a configs/clip.py:noisy
  # workdir's caption logit; needs --caption or labels); the guide must share this model's schedule and T
  c.sample.guidance_form = "free"
  c.sample.guidance_scale = 1.0       # s of the classifier / CLIP gradient
  c.sample.guidance_classifier_workdir = ""
  c.sample.guidance_clip_workdir = ""

  if arg in ("caption", "caption_smoke"):
    c.model.class_conditional = False
    c.model.condition = "caption"      # needs --config.model.text_encoder_workdir
    c.diffusion.bound_condition = "caption"  # each test image's own caption: -log p(x | caption)
  if arg in ("smoke", "caption_smoke"):
    c.data.name = "digits"
    c.data.batch_size = 16
    c.model.base_channels = 8
    c.model.channel_mult = (1, 2)
    c.model.attn_resolutions = (4,)
    c.diffusion.num_steps = 20
    c.diffusion.vlb_chunk = 5
    c.diffusion.sampled_t = 4
    c.optim.warmup_steps = 1
    c.train.num_steps = 4
    c.train.checkpoint_every = 2
    c.train.log_every = 1
    c.train.eval_examples = 16
    c.eval.num_examples = 16
    c.eval.batch_size = 16
    c.eval.is_timesteps = 0           # the smoke runs keep the full bound as their main likelihood;
    c.eval.is_main = False            # tests/test_diffusion_importance.py exercises the estimate
    c.sample.num = 16
    c.sample.ddim_steps = 5
  elif arg and arg != "caption":
    raise ValueError(f"unknown variant {arg!r} of configs/ddpm.py; use 'smoke', 'caption', 'caption_smoke' "
                     "or nothing")
  return c
