"""Conditional affine "learned prior" bijector (Glow's split and top priors).

Given a conditioning input h [B, H, W, Ch] (the half of the activations that
stays in the flow at a split) and/or a class label, a zero-initialised network
gives per-element mu and log sigma, and
  eps = (z - mu) * exp(-log sigma)                     z, eps: [B, H, W, C]
  log|det d eps/dz| = -sum log sigma                    (nats, [B])
so that log N(eps; 0, I) + log-det = log N(z; mu, sigma^2), the learned prior.
The map is triangular in (h, z) -> (h, eps), which is why a whole multi-scale
flow that ends in it is still a bijector with this log-det.

[mu, log sigma] (2C channels) is the sum of
  ZeroConv(h)                           when h is given (split prior),
  a learned [H, W, 2C] bias (init 0)     when h is not given (learned top prior),
  Dense(one_hot(label)) (init 0)         when num_classes > 0 (class-conditional).
Everything starts at zero, so the bijector starts as the identity.
"""
from typing import Optional

import jax
import jax.numpy as jnp
import flax.linen as nn

from genfam.bijectors.base import Bijector, sum_except_batch
from genfam.nets.conv import ZeroConv


class ConditionalAffine(Bijector):
  """eps = (z - mu(h, label)) / sigma(h, label); see the module docstring."""
  num_classes: int = 0

  @nn.compact
  def _mu_log_sigma(self, z, h, label):  # -> 2 x [B, H, W, C]
    c = z.shape[-1]
    stats = jnp.zeros(z.shape[:-1] + (2 * c,), z.dtype)
    if h is not None:
      stats = stats + ZeroConv(2 * c, name="from_h")(h)
    else:
      stats = stats + self.param("bias", nn.initializers.zeros, z.shape[1:-1] + (2 * c,))
    if self.num_classes > 0:
      if label is None:
        raise ValueError("a class-conditional prior needs labels (batch['label'] / condition)")
      onehot = jax.nn.one_hot(label, self.num_classes, dtype=z.dtype)
      emb = nn.Dense(2 * c, kernel_init=nn.initializers.zeros, name="from_label")(onehot)
      stats = stats + emb[:, None, None, :]
    return stats[..., :c], stats[..., c:]

  def forward_and_log_det(self, z, h: Optional[jax.Array] = None,
                          label: Optional[jax.Array] = None):  # [B,H,W,C] -> ([B,H,W,C], [B])
    mu, log_sigma = self._mu_log_sigma(z, h, label)
    return (z - mu) * jnp.exp(-log_sigma), -sum_except_batch(log_sigma)

  def inverse_and_log_det(self, eps, h: Optional[jax.Array] = None,
                          label: Optional[jax.Array] = None):  # [B,H,W,C] -> ([B,H,W,C], [B])
    mu, log_sigma = self._mu_log_sigma(eps, h, label)
    return eps * jnp.exp(log_sigma) + mu, sum_except_batch(log_sigma)
