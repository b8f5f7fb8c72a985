"""DCGAN-style conditional generator and discriminator (Radford et al. 2016; Reed et al. 2016).

The condition reaches both networks as a float vector c [B, E_in]: a one-hot
label, or a frozen text encoder's caption embedding. Each network projects it
(dense + leaky ReLU, as in Reed et al.) and joins it:
  G: [z, proj(c)] -> dense -> h0 x w0 x (ch * 2^(n-1)) -> n x (transposed conv
     stride 2, GroupNorm, ReLU) -> 3x3 conv -> sigmoid: pixel means in (0, 1);
  D: image in [0, 1) -> 2 y - 1 -> 3x3 conv -> n x (4x4 conv stride 2, leaky ReLU)
     -> [features, proj(c) tiled over h0 x w0] -> 1x1 conv -> dense -> logit [B].
n halvings take H x W to h0 x w0 = H / 2^n x W / 2^n exactly: 28x28 -> 7x7,
32x32 -> 8x8, 8x8 -> 2x2 with n = 2; nothing pads the image, so D sees the
D = H * W * C stored pixels. The discriminator has no normalisation layer
(its R1 penalty is per example).

Modules take plain arguments, never configs.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam.errors import GenfamError
from genfam.cpu.conv_transpose import ConvTranspose
from genfam.cpu.matmul_conv import Conv


def check_levels(image_shape, num_levels: int) -> tuple[int, int]:
  """(h0, w0) = (H, W) / 2^num_levels, or a GenfamError naming the most levels the shape allows."""
  height, width = image_shape[0], image_shape[1]
  factor = 2 ** num_levels
  if num_levels < 1 or height % factor or width % factor:
    g, halvings = math.gcd(height, width), 0
    while g % 2 == 0:
      g, halvings = g // 2, halvings + 1
    raise GenfamError(f"images of {height}x{width} do not halve {num_levels} times without padding; "
                      f"set --config.model.num_levels between 1 and {halvings}")
  return height // factor, width // factor


def _groups(channels: int) -> int:
  return math.gcd(8, channels)


class ConditionProjection(nn.Module):
  """c [B, E_in] -> leaky_relu(dense(c)) [B, features] (Reed et al.: 0.2 slope)."""
  features: int

  @nn.compact
  def __call__(self, c):
    return nn.leaky_relu(nn.Dense(self.features)(c), 0.2)


class Generator(nn.Module):
  """G(z [B, Z], c [B, E_in] or None) -> pixel means [B, H, W, C] in (0, 1)."""
  image_shape: tuple
  channels: int = 32          # channels at full resolution; x2 per level down
  num_levels: int = 2
  cond_features: int = 64     # width of the projected condition (0: unconditional)
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, z, c=None):
    h0, w0 = check_levels(self.image_shape, self.num_levels)
    top = self.channels * 2 ** (self.num_levels - 1)
    h = z
    if c is not None and self.cond_features > 0:
      h = jnp.concatenate([z, ConditionProjection(self.cond_features)(c)], axis=-1)   # [B, Z + P]
    h = nn.Dense(h0 * w0 * top)(h).reshape(z.shape[0], h0, w0, top)                 # [B, h0, w0, top]
    h = nn.relu(nn.GroupNorm(_groups(top))(h))
    for level in range(self.num_levels):
      ch = self.channels * 2 ** (self.num_levels - 1 - level)
      h = ConvTranspose(ch, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype)(h)  # x2 resolution
      h = nn.relu(nn.GroupNorm(_groups(ch))(h))
    out = Conv(self.image_shape[2], (3, 3), padding="SAME", dtype=self.dtype)(h)                   # [B, H, W, C]
    return jax.nn.sigmoid(out)


class Discriminator(nn.Module):
  """D(y [B, H, W, C] in [0, 1), c [B, E_in] or None) -> logit [B] (real and matching: > 0)."""
  image_shape: tuple
  channels: int = 32
  num_levels: int = 2
  cond_features: int = 64
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, y, c=None):
    h0, w0 = check_levels(self.image_shape, self.num_levels)
    h = nn.leaky_relu(Conv(self.channels, (3, 3), padding="SAME", dtype=self.dtype)(2.0 * y - 1.0), 0.2)
    for level in range(self.num_levels):
      h = Conv(self.channels * 2 ** (level + 1), (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype)(h)
      h = nn.leaky_relu(h, 0.2)                                                     # [B, h, w, ch_l]
    if c is not None and self.cond_features > 0:
      p = ConditionProjection(self.cond_features)(c)                                # [B, P]
      p = jnp.broadcast_to(p[:, None, None, :], (h.shape[0], h0, w0, p.shape[-1]))
      h = jnp.concatenate([h, p], axis=-1)                                          # [B, h0, w0, ch + P]
    h = nn.leaky_relu(Conv(self.channels * 2 ** self.num_levels, (1, 1), dtype=self.dtype)(h), 0.2)
    return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]                             # [B]
