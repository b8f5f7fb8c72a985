"""The VQ-VAE family ('vqvae'): stage 1 of DALL-E's two-stage recipe (docs/two_stage.md).

Model. A conv encoder maps x in {0..K-1}^(H x W x C) to a grid of vectors
z_e(x) [h, w, E] (each resolution level halves the side: 28 -> 14 -> 7, 8 -> 4 -> 2);
each vector is replaced by its nearest entry of a learned codebook {e_1 .. e_N}
(squared Euclidean distance), giving the code z* = e(x) in {0..N-1}^(h x w) and
the quantized grid z_q = e_{z*}. The decoder maps z_q to the VAE family's discrete
pixel distribution p(x | z) over the K bins of each stored pixel
(`genfam.nets.vae_nets.PixelDecoder`: a discretized logistic mixture, pixels
independent given z), so -log p(x | z) is in nats of the discrete data.

Training (van den Oord et al. 2017), one scalar per image, in bits/dim:
  loss = [-log p(x | z_q + sg(z_e - z_q))                 (straight-through: the decoder's
                                                            gradient passes to the encoder)
          + sum_{h, w} ||sg(z_e) - z_q||^2                 (codebook loss: moves the codes)
          + beta * sum_{h, w} ||z_e - sg(z_q)||^2] / (D log 2)   (commitment, beta = model.commitment)
with sg the stop-gradient. The codebook is learned by this gradient (no EMA
updates); it starts from the encoder's outputs on the first training batch
(N vectors drawn at random from its B x h x w positions), so every code starts
where the data is. Metrics: 'code_perplexity' exp(H) of the batch's code
frequencies and 'codes_used' (distinct codes in the batch): a collapsed codebook
shows as a small perplexity.

Likelihood (kind 'elbo', an upper bound on -log2 p(x) / D). Under a UNIFORM prior
p(z) = N^(-h w) over codes and the deterministic encoder q(z | x) = [z = z*] (a
point mass, entropy 0), the ELBO is exact, not estimated:
  -log2 p(x) <= -log2 p(x | z*) + h w log2 N             (bits per image)
reported per stored pixel: 'recon_bpd' + 'prior_bpd' = 'bpd', prior_bpd = h w log2 N / D.
Stage 2 (`genfam.families.two_stage.code_prior`) replaces the uniform prior by a
learned one over the same codes.

Exports (pure functions of eval_params, restored for other runs by genfam/loop/frozen.py):
  encode(params, images uint8 [B, H, W, C]) -> int32 codes [B, h, w]
  decoder_nll_bits(params, images uint8 [B, H, W, C], codes int32 [B, h, w]) -> [B]
      -log2 p(x | z) / D, bits per stored pixel
  decode(params, codes int32 [B, h, w], rng, how='sample') -> uint8 [B, H, W, C]
      a draw from p(x | z) ('sample') or each pixel's most probable bin ('mode')
"""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam import optim
from genfam.cpu.matmul_conv import Conv
from genfam.errors import GenfamError
from genfam.family import Family
from genfam.likelihood.bits import nats_to_bpd
from genfam.likelihood.discretized import bin_centres
from genfam.nets.conv import ResidualBlock
from genfam.nets.vae_nets import PixelDecoder, level_sizes, pixel_decoder

DECODES = ("sample", "mode")


class GridEncoder(nn.Module):
  """x [B, H, W, C] in [-1, 1] -> z_e [B, h, w, code_dim]: level 0 at the stored size, each
  further level a stride-2 'SAME' conv (side n -> ceil(n / 2)), residual blocks per level."""
  widths: Sequence[int]
  blocks: Sequence[int]
  code_dim: int
  norm: str = "layer"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = Conv(self.widths[0], (3, 3), padding="SAME", dtype=self.dtype)(x)
    for level, (width, num_blocks) in enumerate(zip(self.widths, self.blocks)):
      if level > 0:
        h = Conv(width, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype)(h)
      for _ in range(num_blocks):
        h = ResidualBlock(width, self.norm, dtype=self.dtype)(h)
    return Conv(self.code_dim, (1, 1), dtype=self.dtype)(nn.silu(h))           # [B, h, w, E]


class GridDecoder(nn.Module):
  """z_q [B, h, w, code_dim] -> pixel-decoder parameters [B, H, W, C, P], retracing the
  encoder's level sizes exactly (nearest-neighbour upsampling, then a conv)."""
  image_shape: tuple  # (H, W, C) as stored
  widths: Sequence[int]
  blocks: Sequence[int]
  params_per_pixel: int
  norm: str = "layer"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    height, width, channels = self.image_shape
    sizes = level_sizes(height, width, len(self.widths))
    top = len(self.widths) - 1
    h = Conv(self.widths[top], (3, 3), padding="SAME", dtype=self.dtype)(z)
    for level in range(top, -1, -1):
      if level < top:
        size = tuple(sizes[level])
        if size == (2 * h.shape[1], 2 * h.shape[2]):
          h = Conv(self.widths[level], (3, 3), padding="SAME", dtype=self.dtype, upsample=2)(h)
        else:   # an odd side (7 -> 4 -> 7): resize to the encoder's size at this level
          h = jax.image.resize(h, (h.shape[0], *size, h.shape[-1]), "nearest")
          h = Conv(self.widths[level], (3, 3), padding="SAME", dtype=self.dtype)(h)
      for _ in range(self.blocks[level]):
        h = ResidualBlock(self.widths[level], self.norm, dtype=self.dtype)(h)
    out = Conv(channels * self.params_per_pixel, (3, 3), padding="SAME", dtype=self.dtype)(nn.silu(h))
    return out.reshape(z.shape[0], height, width, channels, self.params_per_pixel)


def nearest_codes(z_e, codebook):  # z_e [..., E], codebook [N, E] -> int32 [...]
  """argmin_k ||z_e - e_k||^2 (ties: the smallest k)."""
  distances = (jnp.sum(z_e * z_e, axis=-1, keepdims=True) - 2.0 * z_e @ codebook.T
               + jnp.sum(codebook * codebook, axis=-1))                         # [..., N]
  return jnp.argmin(distances, axis=-1).astype(jnp.int32)


class VQVAE(nn.Module):
  """Encoder, codebook [N, E] and decoder; call a method with `apply(..., method=)`."""
  image_shape: tuple
  widths: Sequence[int]
  blocks: Sequence[int]
  codebook_size: int
  code_dim: int
  params_per_pixel: int
  norm: str = "layer"

  def setup(self):
    self.encoder = GridEncoder(self.widths, self.blocks, self.code_dim, self.norm)
    self.decoder = GridDecoder(self.image_shape, self.widths, self.blocks, self.params_per_pixel, self.norm)
    self.codebook = self.param("codebook", nn.initializers.normal(1.0), (self.codebook_size, self.code_dim))

  def encode(self, x):  # [B, H, W, C] in [-1, 1] -> z_e [B, h, w, E]
    return self.encoder(x)

  def embed(self, codes):  # int [B, h, w] -> z_q [B, h, w, E]
    return jnp.take(self.codebook, codes, axis=0)

  def decode(self, z_q):  # [B, h, w, E] -> [B, H, W, C, P]
    return self.decoder(z_q)

  def __call__(self, x):  # creates every parameter
    return self.decode(self.embed(nearest_codes(self.encode(x), self.codebook)))


def build(config, spec) -> tuple[VQVAE, PixelDecoder]:
  """The Flax model and pixel decoder of `config.model` for `spec`, checked."""
  m = config.model
  if len(m.widths) != len(m.blocks) or not m.widths:
    raise GenfamError(f"config.model.widths {tuple(m.widths)} and config.model.blocks {tuple(m.blocks)} "
                      "must be non-empty and of equal length (one per resolution level)")
  if m.codebook_size < 2 or m.code_dim < 1:
    raise GenfamError(f"config.model.codebook_size={m.codebook_size} must be >= 2 and "
                      f"config.model.code_dim={m.code_dim} >= 1")
  pixels = pixel_decoder(m, spec.num_bins)
  model = VQVAE(tuple(spec.image_shape), tuple(m.widths), tuple(m.blocks), int(m.codebook_size),
                int(m.code_dim), pixels.params_per_pixel, m.norm)
  return model, pixels


def code_grid(config, spec) -> tuple[int, int]:
  """(h, w): the code grid of `config`'s encoder for images of `spec`."""
  return tuple(level_sizes(spec.image_shape[0], spec.image_shape[1], len(config.model.widths))[-1])


def make(config, spec) -> Family:
  """The VQ-VAE Family for dataset `spec` (genfam.data.spec.DatasetSpec)."""
  model, pixels = build(config, spec)
  shape, num_dims, num_bins = tuple(spec.image_shape), spec.num_dims, spec.num_bins
  h, w = code_grid(config, spec)
  prior_bits = h * w * math.log2(model.codebook_size) / num_dims            # uniform prior, bits/dim
  beta = float(config.model.commitment)
  how = config.sample.decode
  if how not in DECODES:
    raise GenfamError(f"unknown config.sample.decode {how!r}; use one of {DECODES}")
  tx = optim.optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay

  def pixels_of(images):  # uint8 [B, H, W, C] -> (int32 pixels, bin centres in [-1, 1])
    if tuple(images.shape[1:]) != shape:
      raise GenfamError(f"VQ-VAE built for images {shape}, got {tuple(images.shape[1:])}; "
                        "use the dataset the config names")
    x = images.astype(jnp.int32)
    return x, bin_centres(x, num_bins)

  def encode(params, images):  # uint8 [B, H, W, C] -> int32 [B, h, w]
    _, xc = pixels_of(images)
    z_e = model.apply({"params": params}, xc, method=VQVAE.encode)
    return nearest_codes(z_e, params["codebook"])

  def decoder_nll_bits(params, images, codes):  # -> [B] -log2 p(x | z) / D
    x, _ = pixels_of(images)
    out = model.apply({"params": params}, model.apply({"params": params}, codes, method=VQVAE.embed),
                      method=VQVAE.decode)
    return nats_to_bpd(-pixels.log_prob(x, out), num_dims)

  def decode(params, codes, rng, how: str = how):  # int32 [B, h, w] -> uint8 [B, H, W, C]
    out = model.apply({"params": params}, model.apply({"params": params}, codes, method=VQVAE.embed),
                      method=VQVAE.decode)
    x = pixels.mode(out) if how == "mode" else pixels.sample(rng, out)
    return x.astype(jnp.uint8)

  def init(rng, batch):
    rng_params, rng_pick, rng_noise = jax.random.split(rng, 3)
    _, xc = pixels_of(batch["image"])
    params = model.init({"params": rng_params}, xc)["params"]
    # The codebook starts at N encoder outputs of the first batch, drawn at random (with
    # replacement when the batch has fewer than N positions), plus a little noise to split ties.
    z_e = model.apply({"params": params}, xc, method=VQVAE.encode).reshape(-1, model.code_dim)
    pick = jax.random.choice(rng_pick, z_e.shape[0], (model.codebook_size,),
                             replace=z_e.shape[0] < model.codebook_size)
    scale = 0.01 * (jnp.std(z_e) + 1e-6)
    params = dict(params, codebook=z_e[pick] + scale * jax.random.normal(rng_noise, (model.codebook_size,
                                                                                    model.code_dim)))
    return optim.scalar_loss_family_state(params, tx, ema_decay)

  def loss_fn(params, model_state, batch, rng):
    del rng
    x, xc = pixels_of(batch["image"])
    variables = {"params": params}
    z_e = model.apply(variables, xc, method=VQVAE.encode)                      # [B, h, w, E]
    codes = nearest_codes(z_e, params["codebook"])                             # [B, h, w]
    z_q = model.apply(variables, codes, method=VQVAE.embed)                    # [B, h, w, E]
    out = model.apply(variables, z_e + jax.lax.stop_gradient(z_q - z_e), method=VQVAE.decode)
    recon = -pixels.log_prob(x, out)                                           # [B] nats
    codebook_term = jnp.sum((jax.lax.stop_gradient(z_e) - z_q) ** 2, axis=(1, 2, 3))   # [B]
    commitment = jnp.sum((z_e - jax.lax.stop_gradient(z_q)) ** 2, axis=(1, 2, 3))     # [B]
    loss = nats_to_bpd(jnp.mean(recon + codebook_term + beta * commitment), num_dims)
    counts = jnp.sum(jax.nn.one_hot(codes.reshape(-1), model.codebook_size), axis=0)
    freq = counts / jnp.sum(counts)
    entropy = -jnp.sum(jnp.where(freq > 0, freq * jnp.log(jnp.where(freq > 0, freq, 1.0)), 0.0))
    recon_bpd = nats_to_bpd(jnp.mean(recon), num_dims)
    metrics = {"recon_bpd": recon_bpd, "elbo_bpd": recon_bpd + prior_bits,
               "codebook_loss": jnp.mean(codebook_term), "commitment_loss": jnp.mean(commitment),
               "code_perplexity": jnp.exp(entropy), "codes_used": jnp.sum(counts > 0).astype(jnp.float32)}
    return loss, (metrics, model_state)

  def log_likelihood(params, batch, rng):
    del rng
    recon = decoder_nll_bits(params, batch["image"], encode(params, batch["image"]))
    prior = jnp.full_like(recon, prior_bits)
    return {"bpd": recon + prior, "recon_bpd": recon, "prior_bpd": prior}

  def sample(params, rng, num, condition=None):
    """Codes from the uniform prior, decoded: uint8 [num, H, W, C] (the stage-1 model alone;
    the code prior of stage 2 samples codes that look like the data's)."""
    del condition
    rng_codes, rng_pixels = jax.random.split(rng)
    codes = jax.random.randint(rng_codes, (int(num), h, w), 0, model.codebook_size, jnp.int32)
    return decode(params, codes, rng_pixels)

  return Family(name="vqvae", init=init, update=optim.make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=optim.eval_params, log_likelihood=log_likelihood, likelihood_kind="elbo",
                sample=sample,
                likelihood_note=("upper bound: the ELBO of the VQ-VAE under a uniform prior over its "
                                 f"{h}x{w} codes of {model.codebook_size} (deterministic encoder: exact, "
                                 "no sampling)"),
                exports={"encode": encode, "decoder_nll_bits": decoder_nll_bits, "decode": decode})
