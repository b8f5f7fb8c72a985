"""Convolutional building blocks shared across families (Flax Linen).

Modules take plain arguments (ints, tuples), never configs.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from genfam.errors import GenfamError
from genfam.cpu.matmul_conv import Conv


class ZeroConv(nn.Module):
  """A conv whose kernel and bias start at zero, times a learned per-channel
  scale exp(3 * logs) (Glow): the layer's output starts at exactly zero, so a
  coupling layer or learned prior ending in it starts as the identity."""
  features: int
  kernel_size: tuple = (3, 3)
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, x):  # [B, H, W, Cin] -> [B, H, W, features]
    y = Conv(self.features, self.kernel_size, padding="SAME", kernel_init=nn.initializers.zeros,
             bias_init=nn.initializers.zeros, dtype=self.dtype)(x)
    logs = self.param("logs", nn.initializers.zeros, (self.features,))
    return y * jnp.exp(3.0 * logs)


NORMS = ("layer", "group", "none")


class ResidualBlock(nn.Module):
  """x + conv3x3(act(norm(conv3x3(act(norm(x)))))), pre-activation.

  norm: 'layer' (per-example, so batch-free and shard-independent), 'group'
  or 'none'. The second conv starts at zero, so the block starts as identity.
  """
  features: int
  norm: str = "layer"
  dropout: float = 0.0
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  def _norm(self, x):
    if self.norm not in NORMS:
      raise GenfamError(f"unknown normalisation norm={self.norm!r}; use one of {NORMS}")
    if self.norm == "layer":
      return nn.LayerNorm()(x)
    if self.norm == "group":
      return nn.GroupNorm(num_groups=min(32, x.shape[-1]))(x)
    return x

  @nn.compact
  def __call__(self, x, deterministic: bool = True):  # [B, H, W, C] -> [B, H, W, C]
    h = Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype)(nn.silu(self._norm(x)))
    h = nn.Dropout(self.dropout, deterministic=deterministic)(h) if self.dropout > 0 else h
    h = Conv(x.shape[-1], (3, 3), padding="SAME", kernel_init=nn.initializers.zeros, dtype=self.dtype)(
        nn.silu(self._norm(h)))
    return x + h


class ResNet(nn.Module):
  """conv3x3 in -> num_blocks ResidualBlocks -> act -> conv out.

  With zero_out, the last conv is a ZeroConv, so the network's output starts
  at zero (the right start for a coupling conditioner).
  """
  features: int
  num_blocks: int
  out_features: int
  zero_out: bool = False
  norm: str = "layer"
  dropout: float = 0.0
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, x, deterministic: bool = True):  # [B, H, W, Cin] -> [B, H, W, out_features]
    h = Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype)(x)
    for _ in range(self.num_blocks):
      h = ResidualBlock(self.features, self.norm, self.dropout, dtype=self.dtype)(h, deterministic)
    h = nn.silu(h)
    if self.zero_out:
      return ZeroConv(self.out_features, dtype=self.dtype)(h)
    return Conv(self.out_features, (3, 3), padding="SAME", dtype=self.dtype)(h)


class GlowConditioner(nn.Module):
  """Glow's coupling network: conv3x3 -> relu -> conv1x1 -> relu -> ZeroConv3x3.

  The last layer starts at zero, so a coupling using it starts with t = 0 and
  a constant scale.
  """
  features: int
  out_features: int
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, x):  # [B, H, W, Cin] -> [B, H, W, out_features]
    h = nn.relu(Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype)(x))
    h = nn.relu(Conv(self.features, (1, 1), dtype=self.dtype)(h))
    return ZeroConv(self.out_features, dtype=self.dtype)(h)
