"""A noise-conditional convolutional encoder (Flax Linen): the trunk of the noisy domain
classifier and of the noisy CLIP image tower, which read a diffusion state x_t and its
timestep t (the models that guide diffusion sampling).

The same stages as `genfam.nets.image_encoder.ConvEncoder` (conv3x3 -> relu per conv, 2x2 max
pool per stage, dense -> relu), with the timestep told to every conv: a sinusoidal
embedding of t -> dense -> SiLU, projected to each conv's channels and added before its relu
(the U-Net's way of conditioning on t). Modules take plain arguments, never configs.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from genfam.cpu.matmul_conv import Conv
from genfam.nets.unet import timestep_embedding


class NoisyConvEncoder(nn.Module):
  """(x_t float [B, H, W, C] on the diffusion's scale, t int [B]) -> features [B, features]."""
  channels: tuple = (32, 64)
  convs_per_stage: int = 1
  features: int = 128
  time_dim: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, t):
    emb = nn.silu(nn.Dense(self.time_dim)(timestep_embedding(t, self.time_dim)))        # [B, time_dim]
    for c in self.channels:
      for _ in range(self.convs_per_stage):
        h = Conv(c, (3, 3), padding="SAME", dtype=self.dtype)(x)
        x = nn.relu(h + nn.Dense(c)(emb)[:, None, None, :])
      if min(x.shape[1], x.shape[2]) >= 2:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    return nn.relu(nn.Dense(self.features)(x))
