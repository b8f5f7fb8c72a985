"""The VAE's networks (Flax Linen) and its pixel decoders.

Encoder: x [B, H, W, C] in [-1, 1] -> q(z|x) = N(mean, diag exp(log_scale)^2).
Decoder: z [B, L] -> per-pixel parameters [B, H, W, C, P] of a discrete
distribution over the K bins of each stored pixel (`PixelDecoder`).

Resolution levels: level 0 is the stored H x W; each further level halves it
with a stride-2 'SAME' conv, so a side n becomes ceil(n / 2) (28 -> 14 -> 7,
8 -> 4 -> 2, 32 -> 16 -> 8, and odd sides such as 7 -> 4 work too). The decoder
retraces the same sizes exactly (nearest-neighbour resize to the encoder's size
at that level, then a conv), so no image is ever padded or cropped.

Modules take plain arguments (ints, tuples), never configs.
"""
import dataclasses
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam.errors import GenfamError
from genfam.likelihood.discretized import (discretized_gaussian_log_prob, discretized_logistic_log_prob,
                                           discretized_logistic_mixture_log_prob)
from genfam.nets.conv import ResidualBlock
from genfam.cpu.matmul_conv import Conv


def level_sizes(height: int, width: int, num_levels: int) -> list[tuple[int, int]]:
  """Spatial size (h, w) of each resolution level; level 0 is (height, width)."""
  sizes = [(height, width)]
  for _ in range(num_levels - 1):
    h, w = sizes[-1]
    sizes.append((-(-h // 2), -(-w // 2)))
  return sizes


def _with_label(h: jax.Array, label: Optional[jax.Array], num_classes: int) -> jax.Array:
  """Appends one-hot labels [B, num_classes] to features [B, F] when conditional."""
  if num_classes == 0:
    return h
  if label is None:
    raise ValueError("this VAE is class-conditional: pass int32 labels [B]")
  return jnp.concatenate([h, jax.nn.one_hot(label, num_classes, dtype=h.dtype)], axis=-1)


class Encoder(nn.Module):
  """x -> (mean, log_scale) of a diagonal-Gaussian q(z|x[, y]).

  widths[i], blocks[i]: channels and residual blocks at resolution level i.
  The log-scale head starts at zero (posterior std 1 at initialisation).
  """
  widths: Sequence[int]
  blocks: Sequence[int]
  latent_dim: int
  num_classes: int = 0
  norm: str = "layer"
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, x, label=None):  # x [B, H, W, C] float, label int32 [B] -> 2 x [B, L]
    h = Conv(self.widths[0], (3, 3), padding="SAME", dtype=self.dtype)(x)          # [B, H, W, w0]
    for level, (width, num_blocks) in enumerate(zip(self.widths, self.blocks)):
      if level > 0:
        h = Conv(width, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype)(h)  # [B, ceil(h/2), ceil(w/2), width]
      for _ in range(num_blocks):
        h = ResidualBlock(width, self.norm, dtype=self.dtype)(h)
    h = nn.silu(h).reshape(h.shape[0], -1)                          # [B, h * w * width]
    h = _with_label(h, label, self.num_classes)
    mean = nn.Dense(self.latent_dim)(h)                              # [B, L]
    log_scale = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros)(h)  # [B, L]
    return mean, log_scale


class Decoder(nn.Module):
  """z [B, L] (and labels) -> pixel-decoder parameters [B, H, W, C, P]."""
  image_shape: tuple  # (H, W, C) as stored
  widths: Sequence[int]
  blocks: Sequence[int]
  params_per_pixel: int
  num_classes: int = 0
  norm: str = "layer"
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, z, label=None):  # z [B, L], label int32 [B] -> [B, H, W, C, P]
    height, width, channels = self.image_shape
    sizes = level_sizes(height, width, len(self.widths))
    top = len(self.widths) - 1
    (hl, wl), cl = sizes[top], self.widths[top]
    h = nn.Dense(hl * wl * cl)(_with_label(z, label, self.num_classes))
    h = h.reshape(z.shape[0], hl, wl, cl)                           # [B, h_top, w_top, w_top_ch]
    for level in range(top, -1, -1):
      if level < top:
        size = sizes[level]
        if tuple(size) == (2 * h.shape[1], 2 * h.shape[2]):                    # nearest x2, conv
          h = Conv(self.widths[level], (3, 3), padding="SAME", dtype=self.dtype, upsample=2)(h)
        else:
          h = jax.image.resize(h, (h.shape[0], *size, h.shape[-1]), "nearest")
          h = Conv(self.widths[level], (3, 3), padding="SAME", dtype=self.dtype)(h)  # [B, *size, widths[level]]
      for _ in range(self.blocks[level]):
        h = ResidualBlock(self.widths[level], self.norm, dtype=self.dtype)(h)
    h = nn.silu(h)
    out = Conv(channels * self.params_per_pixel, (3, 3), padding="SAME", dtype=self.dtype)(h)
    return out.reshape(z.shape[0], height, width, channels, self.params_per_pixel)


class VAE(nn.Module):
  """Encoder, decoder and prior p(z[|y]) of the VAE; call a method with `apply(..., method=)`.

  Prior: N(0, I), or with num_classes > 0 a learned N(mu_y, diag sigma_y^2) per
  class, initialised at N(0, I).
  """
  image_shape: tuple
  latent_dim: int
  widths: Sequence[int]
  blocks: Sequence[int]
  params_per_pixel: int
  num_classes: int = 0
  norm: str = "layer"
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  def setup(self):
    self.encoder = Encoder(self.widths, self.blocks, self.latent_dim, self.num_classes, self.norm, self.dtype)
    self.decoder = Decoder(self.image_shape, self.widths, self.blocks, self.params_per_pixel,
                           self.num_classes, self.norm, self.dtype)
    if self.num_classes:
      self.prior_table = nn.Embed(self.num_classes, 2 * self.latent_dim,
                                  embedding_init=nn.initializers.zeros)

  def encode(self, x, label=None):  # [B, H, W, C] -> mean, log_scale [B, L]
    return self.encoder(x, label)

  def decode(self, z, label=None):  # [B, L] -> [B, H, W, C, P]
    return self.decoder(z, label)

  def prior(self, label, num: int):  # -> mean, log_scale [num, L]
    if not self.num_classes:
      zeros = jnp.zeros((num, self.latent_dim), jnp.float32)
      return zeros, zeros
    table = self.prior_table(label)                                  # [num, 2L]
    return table[:, :self.latent_dim], table[:, self.latent_dim:]

  def __call__(self, x, label=None):  # creates every parameter; [B, H, W, C] -> [B, H, W, C, P]
    mean, _ = self.encode(x, label)
    self.prior(label, x.shape[0])
    return self.decode(mean, label)


@dataclasses.dataclass(frozen=True)
class PixelDecoder:
  """p(x|z) over K bins per stored pixel, independent across pixels given z.

  kind:
    'logistic_mixture'  per channel, sum_m pi_m DiscLogistic(mu_m, s_m); P = 3M
                        parameters [logits | means | log-scales]. Channels are
                        independent given z (no PixelCNN++ channel coupling).
    'logistic'          one discretized logistic; P = 2 [mean | log-scale].
    'gaussian'          one discretized Gaussian; P = 2 [mean | log-scale].
  Bins lie on [-1, 1] with open edge bins (genfam.likelihood.discretized), so these are
  probabilities of the discrete pixels and -log p(x|z) is in nats of the data.
  Log-scales are floored at min_log_scale (PixelCNN++ uses -7).
  """
  kind: str
  num_bins: int
  num_mixtures: int = 1
  min_log_scale: float = -7.0

  KINDS = ("logistic_mixture", "logistic", "gaussian")

  @property
  def params_per_pixel(self) -> int:
    return 3 * self.num_mixtures if self.kind == "logistic_mixture" else 2

  def pixel_log_prob(self, x, out):  # x int [..., H, W, C], out [..., H, W, C, P] -> [..., H, W, C]
    m = self.num_mixtures
    if self.kind == "logistic_mixture":
      log_scales = jnp.maximum(out[..., 2 * m:], self.min_log_scale)
      return discretized_logistic_mixture_log_prob(x, out[..., :m], out[..., m:2 * m], log_scales,
                                                   self.num_bins)
    log_scale = jnp.maximum(out[..., 1], self.min_log_scale)
    fn = discretized_logistic_log_prob if self.kind == "logistic" else discretized_gaussian_log_prob
    return fn(x, out[..., 0], log_scale, self.num_bins)

  def log_prob(self, x, out):  # x int [..., H, W, C], out [..., H, W, C, P] -> [...] nats
    return jnp.sum(self.pixel_log_prob(x, out), axis=(-3, -2, -1))

  def mode(self, out):  # [..., H, W, C, P] -> int32 [..., H, W, C]
    """The most probable bin of each pixel, exactly: a loop over the K bins
    keeping the running best, so memory is that of one bin's probabilities."""

    def body(k, carry):
      best_lp, best_k = carry
      lp = self.pixel_log_prob(jnp.full(out.shape[:-1], k, jnp.int32), out)
      better = lp > best_lp
      return jnp.where(better, lp, best_lp), jnp.where(better, k, best_k)

    init = (jnp.full(out.shape[:-1], -jnp.inf, out.dtype), jnp.zeros(out.shape[:-1], jnp.int32))
    return jax.lax.fori_loop(0, self.num_bins, body, init)[1]

  def sample(self, rng, out):  # [..., H, W, C, P] -> int32 [..., H, W, C]
    """Draws v from the continuous (mixture) density and returns its bin: round
    v on the bin grid and clip, which is exact because the edge bins are open."""
    m = self.num_mixtures
    k_comp, k_noise = jax.random.split(rng)
    if self.kind == "logistic_mixture":
      comp = jax.random.categorical(k_comp, out[..., :m], axis=-1)[..., None]  # [..., H, W, C, 1]
      mean = jnp.take_along_axis(out[..., m:2 * m], comp, axis=-1)[..., 0]
      log_scale = jnp.take_along_axis(out[..., 2 * m:], comp, axis=-1)[..., 0]
    else:
      mean, log_scale = out[..., 0], out[..., 1]
    scale = jnp.exp(jnp.maximum(log_scale, self.min_log_scale))
    if self.kind == "gaussian":
      noise = jax.random.normal(k_noise, mean.shape, mean.dtype)
    else:
      noise = jax.random.logistic(k_noise, mean.shape, mean.dtype)
    v = mean + scale * noise                                        # continuous, on [-1, 1] scale
    k = jnp.round((v + 1.0) * (0.5 * (self.num_bins - 1)))
    return jnp.clip(k, 0, self.num_bins - 1).astype(jnp.int32)



def pixel_decoder(model_config, num_bins: int) -> PixelDecoder:
  """The PixelDecoder a model config names (model.decoder, num_mixtures, min_log_scale) over
  `num_bins` grey levels; an unknown decoder kind is a one-line GenfamError."""
  m = model_config
  if m.decoder not in PixelDecoder.KINDS:
    raise GenfamError(f"unknown config.model.decoder {m.decoder!r}; use one of {PixelDecoder.KINDS}")
  return PixelDecoder(m.decoder, num_bins, m.num_mixtures, m.min_log_scale)
