"""VAE on Fashion-MNIST: conv encoder/decoder, discretized-logistic-mixture pixels.

Run:
  python -m genfam.main --config=configs/vae.py --workdir=runs/vae
  python -m genfam.main --config=configs/vae.py:smoke --workdir=/tmp/vae_smoke   # seconds, digits
  python -m genfam.main --config=configs/vae.py --config.model.class_conditional=True --workdir=runs/cvae

Reports the ELBO (likelihood kind 'elbo', -ELBO in bits/dim with its
reconstruction and KL parts) and IWAE-`eval.iwae_k` beside it.

Reaches (4000 steps of 64 = 4.3 epochs, 49 minutes of training on one core of
a 2-core AVX-512 CPU at 89 images/s, peak RSS 1.5 GiB):
  -ELBO     3.353 +- 0.009 bits/dim on all 10000 test images (recon 3.231, KL 0.122)
  IWAE-1000 3.283 +- 0.041 bits/dim on the first 500 test images
with
  python -m genfam.main --config=configs/vae.py --config.eval.extra_num_examples=500 --workdir=runs/vae
All 32 latent units stay active. Samples (decoder mode) are blotchy: the
5-component logistic mixture decoder carries most of the likelihood (the KL is
0.12 of 3.35 bits/dim).

Sizes: the default is chosen to train in ~20-30 minutes on a 2-core CPU. Full
28x28 resolution holds only the input/output convs at 16 channels (a 3x3 conv
at 28x28 costs 784*9*Cin*Cout MACs, so it stays narrow); the residual blocks
sit at 14x14 (32 ch) and 7x7 (64 ch), where they are 4x and 16x cheaper. That
is ~26M MACs per image forward (encoder + decoder), 0.54M parameters (mostly
the dense layers between the 7x7x64 map and z). Measured on this shared 2-core
machine: 210 training images/s when it is quiet, 115 when loaded, so 4000
steps at batch 64 (4.3 epochs) take 20-37 minutes; 600 steps already reach an
ELBO of 3.60 bits/dim (IWAE-100 3.56) on 500 test images. A 32-dim latent is
ample for Fashion-MNIST. A 5-component logistic mixture per pixel fits the
mass at the background bin 0 and the multi-modal grey levels of clothes.
Constant learning rate after warm-up and EMA weights for evaluation, as the
flows, so a run can be extended (resumed with a larger num_steps) as is.

IWAE-1000 costs 1000 decoder passes per example: 500-1000 passes/s here, so
1-2 s per test image and hours for the full 10k test split. The ELBO is
therefore evaluated on the whole test split and IWAE-1000 on its first
eval.extra_num_examples = 1000 images (each report states its count);
--config.eval.extra_num_examples=0 runs IWAE on the whole split too.
`iwae_chunk` bounds memory (iwae_chunk x eval.batch_size decoder passes at once).
"""
from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "vae"

  c.data.batch_size = 64
  c.train.num_steps = 4000
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.optim.clip_norm = 100.0
  c.optim.ema_decay = 0.995     # evaluation and samples use the EMA weights

  m = c.model
  m.latent_dim = 32
  m.widths = (16, 32, 64)       # channels per resolution level (28, 14, 7 for Fashion-MNIST)
  m.blocks = (0, 1, 1)          # residual blocks per level
  m.norm = "layer"              # in the residual blocks: 'layer', 'group' or 'none'
  m.decoder = "logistic_mixture"  # 'logistic_mixture', 'logistic' or 'gaussian' (all discretized)
  m.num_mixtures = 5
  m.min_log_scale = -7.0        # floor on the decoder's log-scales
  m.kl_warmup_steps = 0         # >0: KL weight rises linearly to 1 over this many updates
  m.free_bits = 0.0             # >0: nats per latent dim below which the KL is not penalised
  m.class_conditional = False   # class-conditional prior, encoder and decoder (labels)
  m.active_threshold = 0.01     # active unit: Var_x(E_q[z_u]) over a batch above this; none active
                                # -> metric alert_posterior_collapse = 1 (a warning in the loop)

  c.eval.iwae_k = 1000          # importance samples of the 'iwae-<k>' bound; 0 disables it
  c.eval.extra_num_examples = 1000  # IWAE on the first 1000 test images (0: all)
  c.eval.iwae_chunk = 8         # samples per chunk: memory ~ iwae_chunk * eval.batch_size decodes

  c.sample.decode = "mode"      # 'mode': each pixel's most probable bin; 'sample': draw p(x|z)
  c.sample.temperature = 1.0    # prior std multiplier when sampling z

  if arg == "smoke":
    c.data.name = "digits"
    c.data.batch_size = 16
    c.train.num_steps = 4
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.eval_examples = 32
    c.optim.warmup_steps = 1
    c.eval.num_examples = 32
    c.eval.batch_size = 32
    c.eval.iwae_k = 8
    c.eval.extra_num_examples = 0
    c.eval.iwae_chunk = 4
    c.sample.num = 16
    m.latent_dim = 4
    m.widths = (8, 16)
    m.blocks = (0, 1)
    m.num_mixtures = 2
    m.kl_warmup_steps = 2
  elif arg:
    raise ValueError(f"unknown configs/vae.py argument {arg!r}; use 'smoke' or nothing")
  return c
