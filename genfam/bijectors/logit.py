"""Logit preprocessing (RealNVP): y = logit(a + (1 - 2a) x), x in [0, 1].

With p = a + (1 - 2a) x in [a, 1 - a] the map is elementwise and
  dy/dx = (1 - 2a) / (p (1 - p)),
  log|det| = sum_i [log(1 - 2a) - log p_i - log(1 - p_i)]    (nats, [B]).
The margin a keeps y finite at x = 0 and x = 1. Inverse:
x = (sigmoid(y) - a) / (1 - 2a), whose log-det uses log sigmoid(+-y) so it
stays finite for large |y|.
"""
import jax
import jax.numpy as jnp

from genfam.bijectors.base import Bijector, sum_except_batch


class Logit(Bijector):
  """y = logit(alpha + (1 - 2 alpha) x); alpha in (0, 1/2)."""
  alpha: float = 0.05

  def forward_and_log_det(self, x):  # [B, ...] in [0, 1] -> ([B, ...], [B])
    a = self.alpha
    p = a + (1.0 - 2.0 * a) * x
    log_p, log_1mp = jnp.log(p), jnp.log1p(-p)
    y = log_p - log_1mp
    log_det = sum_except_batch(jnp.log1p(-2.0 * a) - log_p - log_1mp)
    return y, log_det

  def inverse_and_log_det(self, y):  # [B, ...] -> ([B, ...] in [0, 1], [B])
    a = self.alpha
    x = (jax.nn.sigmoid(y) - a) / (1.0 - 2.0 * a)
    # dx/dy = sigmoid(y) sigmoid(-y) / (1 - 2a)
    log_det = sum_except_batch(jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y) - jnp.log1p(-2.0 * a))
    return x, log_det
