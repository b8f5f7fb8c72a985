"""A small convolutional image encoder (Flax Linen): the domain classifier's
trunk and CLIP's image tower.

Modules take plain arguments (ints, tuples), never configs.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from genfam.cpu.matmul_conv import Conv


def pixels_to_unit(image, num_bins: int):
  """uint8 [B, H, W, C] in {0 .. K-1} -> float32 [B, H, W, C] in [-1, 1]."""
  return image.astype(jnp.float32) * (2.0 / (num_bins - 1)) - 1.0


class ConvEncoder(nn.Module):
  """Stages of (conv3x3 -> relu) x convs_per_stage -> 2x2 max pool, then
  flatten -> dense(features) -> relu.

  channels: output channels of each stage; the spatial size halves after each
  stage while it is at least 2 (28 -> 14 -> 7, 8 -> 4 -> 2). The output is
  the penultimate representation [B, features] that heads (a classifier's
  logits, CLIP's projection) are read from.
  """
  channels: tuple = (32, 64)
  convs_per_stage: int = 2
  features: int = 128
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, x):  # [B, H, W, C] float -> [B, features]
    for c in self.channels:
      for _ in range(self.convs_per_stage):
        x = nn.relu(Conv(c, (3, 3), padding="SAME", dtype=self.dtype)(x))
      if min(x.shape[1], x.shape[2]) >= 2:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    return nn.relu(nn.Dense(self.features)(x))
