"""Fixed affine preprocessing: y = scale * (x + shift), elementwise.

Glow's `x - 0.5` is scale 1, shift -0.5 (log-det 0); scale 2, shift -0.5
maps [0, 1) onto [-1, 1). log|det| = D log|scale| nats per example, D the
number of non-batch elements; this is the preprocessing Jacobian that the
reported likelihood must count.
"""
import math

import jax.numpy as jnp

from genfam.bijectors.base import Bijector, per_example


class Scaling(Bijector):
  """y = scale * (x + shift) with constant (non-learned) scale != 0 and shift."""
  scale: float = 1.0
  shift: float = -0.5

  def _log_det(self, x):
    d = math.prod(x.shape[1:])
    return per_example(d * math.log(abs(self.scale)), x)

  def forward_and_log_det(self, x):  # [B, ...] -> ([B, ...], [B])
    return self.scale * (x + self.shift), self._log_det(x)

  def inverse_and_log_det(self, y):  # [B, ...] -> ([B, ...], [B])
    return y / self.scale - self.shift, -self._log_det(y)
