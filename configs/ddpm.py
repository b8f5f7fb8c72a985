"""DDPM on Fashion-MNIST: trained on L_simple, evaluated by its full bound (all T terms).

Run:
  python -m genfam.main --config=configs/ddpm.py --workdir=runs/ddpm
  python -m genfam.main --config=configs/ddpm.py --mode=sample --workdir=runs/ddpm
  python -m genfam.main --config=configs/ddpm.py:smoke --workdir=/tmp/ddpm-smoke   # tiny, on digits
  # on a CPU, 1.19x faster training and 1.5x faster evaluation through XLA's Eigen convolutions instead of
  # YNNPACK, but its values depend on the device split (README, "Weight gradients and YNNPACK"):
  python -m genfam.main --config=configs/ddpm.py \
      --config.train.xla_cpu_flags=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution
Caption-conditional (the ':caption' variant; needs a configs/clip.py workdir on the same dataset):
  python -m genfam.main --config=configs/ddpm.py:caption \
      --config.model.text_encoder_workdir=runs/clip --workdir=runs/ddpm_caption
  python -m genfam.main --config=configs/ddpm.py:caption --config.model.text_encoder_workdir=runs/clip \
      --workdir=runs/ddpm_caption --mode=sample --caption="a dark wide pullover" --config.sample.guidance=3
  (':caption_smoke' is the same on digits, tiny; its text_encoder_workdir is a configs/clip.py:smoke workdir.)
Sampling speed (DDPM and DDIM at S = 10 .. 250):
  python -m experiments.diffusion_sampling_speed --workdir=runs/ddpm

Reaches: 3.829 +- 0.109 bits/dim (vlb, the full bound over all T = 1000 terms:
prior 0.000, L_1..L_999 2.160, L_0 1.665, label 0.004) on the first 50 test
images, after 2500 steps of 32 images (1.3 epochs; 94 minutes of training on
one core of a 2-core AVX-512 CPU that was also running tests, 16 images/s),
peak RSS 1.8 GiB:
  python -m genfam.main --config=configs/ddpm.py --config.data.batch_size=32 \
      --config.train.num_steps=2500 --config.eval.num_examples=50 --workdir=runs/ddpm
A short run leaves the decoder term L_0 large (fixed posterior variances);
the samples (DDIM, 100 steps) already look like clothes.

Schedule and variance: linear (Ho et al.), fixed posterior variances and L_simple,
because the measured run above used them; no equal-cost race on this machine
has shown an alternative better. The cosine schedule with learned variances and
the hybrid loss (Nichol & Dhariwal) is configs/iddpm.py (diffusion.schedule,
.variance, .loss, .t_sampling here). A short equal-wall-clock race was run and
cannot overturn that: four variants at once on one shared core (`taskset -c 1
nice -n 10`), batch 32, --config.train.max_train_seconds=1200 each (compile
included), --config.diffusion.sampled_t=0, full bound on the first 20 test images.
Each reached only 71-75 steps, inside the 200-step warm-up:
  linear, posterior, L_simple (this default)   73 steps  6.992 +- 0.150 bits/dim (L_0 2.152)
  cosine, posterior, L_simple                  75 steps  6.466 +- 0.169 bits/dim (L_0 1.581)
  cosine, learned, hybrid (configs/iddpm.py)   71 steps  6.221 +- 0.144 bits/dim (L_0 1.573)
The order favours cosine and learned variances, but ~1% of a real run says little
about where a converged run ends, so the default stays the measured linear one.

The default model is sized for a 2-core CPU and about an hour of training:
a U-Net 28 -> 14 -> 7 with 32/64/64 channels, one residual block per level,
self-attention only at 7x7 (49 positions; attention at 14x14 costs more than it
gives at this size) and in the middle: 1.1M parameters, 0.36 GFLOP per image
forward, 69 GFLOP per training step at batch 64 (XLA's count). 2000 steps
(~2 epochs) take ~1 h at ~1.8 s/step; 3.7 s/step was measured while the two
cores were shared by four jobs. A U-Net the size of Ho et al.'s CIFAR-10 one
(35.7M parameters) would not get far in an hour here. EMA decay 0.995 (a window
of ~200 steps: the run is short), warmed up as min(0.995, (1 + n) / (10 + n)).

The bound costs T = 1000 network evaluations per test image (0.36 TFLOP), so
all 10k test images would take a day or two on this CPU: eval.num_examples defaults to
100 (~15-30 min; the standard error is reported with it); set
--config.eval.num_examples=0 for the whole test split on a faster machine. The
'vlb-sampled-50t' extra estimates the same bound without bias from 50 sampled
t per image (20x cheaper, noisier). The model is class-conditional with a null
label (classifier-free guidance); the bound is that of the mixture
p(x) = sum_y p(x | y) / 10 (adds log(10) / (784 log 2) = 0.004 bits/dim), and
the sample grid draws from the same mixture (labels 0..9 by column, w = 1).
Samples use DDIM with 100 steps: DDPM's 1000 steps for 60 images take ~10-20
minutes here (--config.sample.sampler=ddpm).

Caption-conditional (':caption'): the U-Net takes the frozen CLIP text encoder's
pooled embedding of the caption (runs/clip: configs/clip.py's measured 600-step
run) where the label embedding goes, with a learned null embedding dropped in
with p_uncond = 0.1; sample.guidance w guides DDPM and DDIM. Its bound is
-log p(x | caption), each test image with its own (epoch-0) caption, reported as
'conditional on caption' (no + log C: captions are no finite set of known
prior), so it is not comparable with the unconditional numbers above. A SHORT
run only: 282 steps of 32 images (0.15 epochs; 900 s of training, compile
included, on one core of the 2-core CPU at load 5-7 from other jobs, 10.9
images/s; peak RSS 1.9 GiB) reached 4.607 +- 0.160 bits/dim (vlb, all T = 1000
terms: L_1..L_999 2.752, L_0 1.855, prior 0.000) on the first 20 test images:
  taskset -c 1 nice -n 10 python -m genfam.main --config=configs/ddpm.py:caption \
      --config.model.text_encoder_workdir=runs/clip --config.data.batch_size=32 \
      --config.train.max_train_seconds=900 --config.diffusion.sampled_t=0 \
      --config.eval.num_examples=20 --config.train.progress=False --workdir=runs/ddpm_caption
Ten samples of each of two sentences, DDIM 100 steps, w = 3 (27.5 s and 32.6 s
per command, load and compile included):
  python -m genfam.main --config=configs/ddpm.py:caption --config.model.text_encoder_workdir=runs/clip \
      --config.sample.num=10 --config.sample.guidance=3 --workdir=runs/ddpm_caption --mode=sample \
      --caption="a dark wide pullover"      # and "a light small sandal"
At this length about half the samples are noisy textures; of the rest, those for
the pullover are dark, wide garment shapes and those for the sandal bright, low
shoe-like shapes (same starting noise per grid position): the caption steers the
samples, but no quality is claimed.
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

  c.sample.num = 60
  c.sample.conditional = True         # labels 0..9 in columns: samples of the mixture whose bound is reported
  c.sample.sampler = "ddim"           # 'ddim' or 'ddpm' (T = 1000 network calls per image: ~10x slower)
  c.sample.ddim_steps = 100           # S
  c.sample.eta = 0.0                  # DDIM: 0 deterministic, 1 = DDPM-like noise
  c.sample.spacing = "trailing"       # DDIM timesteps: 'linspace', 'leading' or 'trailing'
  c.sample.guidance = 1.0             # w: eps_null + w (eps_cond - eps_null); 1 = plain conditional, 0 = unconditional

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
    c.sample.num = 16
    c.sample.ddim_steps = 5
  elif arg and arg != "caption":
    raise ValueError(f"unknown variant {arg!r} of configs/ddpm.py; use 'smoke', 'caption', 'caption_smoke' "
                     "or nothing")
  return c
