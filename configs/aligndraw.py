"""AlignDRAW on Fashion-MNIST: DRAW's recurrent VAE with read/write attention, caption-conditional.

  .venv/bin/python -m genfam.main --config=configs/aligndraw.py --workdir=runs/aligndraw
  .venv/bin/python -m genfam.main --config=configs/aligndraw.py --workdir=runs/aligndraw \
      --mode=sample --caption="a photo of a dark ankle boot"

Reports -ELBO on -log p(x | caption) (kind 'elbo', parts decoder and kl) and IWAE-`eval.iwae_k`
beside it, each test image with its own caption. Headline: -ELBO 3.757 +- 0.010 bits/dim on all 10000
test images (IWAE-100 3.690 +- 0.045 on the first 500) after 600 CPU-seconds (1033 steps of 64,
--config.train.max_train_seconds=600 --config.train.clock=cpu). Maths, commands and tests:
docs/results.md, "AlignDRAW". ':smoke' is the tiny variant the tests run.
"""
from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "aligndraw"

  c.data.batch_size = 64
  c.train.num_steps = 4000
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.optim.clip_norm = 10.0      # DRAW's LSTMs: clip the gradient's global norm
  c.optim.ema_decay = 0.995     # evaluation and samples use the EMA weights

  m = c.model
  m.steps = 16                  # T: glimpses, latents and canvas writes per image
  m.latent_dim = 16             # Z per step
  m.encoder_hidden = 256        # LSTM^enc units
  m.generator_hidden = 256      # LSTM^gen units
  m.read_size = 2               # N of the read grid (on x and on the error image)
  m.write_size = 5              # N of the write grid
  m.caption_embed = 32          # word embedding width
  m.caption_hidden = 64         # units per direction of the caption's bidirectional LSTM
  m.align_features = 64         # width of the alignment's score network
  m.decoder = "logistic_mixture"  # the canvas's pixel decoder: 'logistic_mixture', 'logistic' or 'gaussian'
  m.num_mixtures = 5
  m.min_log_scale = -7.0        # floor on the decoder's log-scales

  c.eval.iwae_k = 100           # importance paths of the 'iwae-<k>' bound; 0 disables it
  c.eval.extra_num_examples = 500  # IWAE on the first 500 test images (0: all)
  c.eval.iwae_chunk = 10        # paths per chunk: memory ~ iwae_chunk * eval.batch_size unrolls

  c.sample.conditional = True   # the grid: the captions of the first test images
  c.sample.decode = "mode"      # 'mode': each pixel's most probable bin; 'sample': draw p(x | c_T)
  c.sample.temperature = 1.0    # prior std multiplier when sampling z_t

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
    c.eval.iwae_k = 4
    c.eval.extra_num_examples = 0
    c.eval.iwae_chunk = 2
    c.sample.num = 8
    m.steps = 3
    m.latent_dim = 4
    m.encoder_hidden = 16
    m.generator_hidden = 16
    m.write_size = 3
    m.caption_embed = 8
    m.caption_hidden = 8
    m.align_features = 8
    m.num_mixtures = 2
  elif arg:
    raise ValueError(f"unknown configs/aligndraw.py argument {arg!r}; use 'smoke' or nothing")
  return c
