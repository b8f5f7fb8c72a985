"""Invertible 1x1 convolution (Glow), plain parametrisation.

A learned C x C matrix W mixes the channels of every pixel:
  y[b, h, w, :] = W @ x[b, h, w, :]                    x, y: [B, H, W, C]
  log|det dy/dx| = H * W * log|det W|                  (nats, [B])
W starts as a random orthogonal matrix (log|det W| = 0). The inverse uses
W^-1. Cost O(C^3) per call for slogdet / inverse; see lu_conv1x1.py for the
LU-decomposed form that makes both O(C).
"""
import jax.numpy as jnp
import flax.linen as nn

from genfam.bijectors.base import Bijector, per_example, spatial_size


def mix_channels(x, w):  # [B, H, W, C], [C, C] -> [B, H, W, C]: W applied to each pixel
  return jnp.einsum("...d,cd->...c", x, w)


class Conv1x1(Bijector):
  """y = W x per pixel; W a free C x C matrix, random orthogonal at init."""

  @nn.compact
  def _kernel(self, c: int):  # -> [C, C]
    return self.param("kernel", nn.initializers.orthogonal(), (c, c))

  def forward_and_log_det(self, x):  # [B, H, W, C] -> ([B, H, W, C], [B])
    w = self._kernel(x.shape[-1])
    log_abs_det = jnp.linalg.slogdet(w)[1]
    return mix_channels(x, w), per_example(spatial_size(x) * log_abs_det, x)

  def inverse_and_log_det(self, y):  # [B, H, W, C] -> ([B, H, W, C], [B])
    w = self._kernel(y.shape[-1])
    log_abs_det = jnp.linalg.slogdet(w)[1]
    return mix_channels(y, jnp.linalg.inv(w)), per_example(-spatial_size(y) * log_abs_det, y)
