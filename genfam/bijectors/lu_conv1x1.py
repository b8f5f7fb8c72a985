"""Invertible 1x1 convolution (Glow), LU-decomposed parametrisation.

  W = P L (U + diag(sign_s * exp(log_s)))
P a fixed permutation, L unit lower triangular, U strictly upper triangular,
sign_s in {-1, +1}^C fixed, log_s learned. Then
  y[b, h, w, :] = W @ x[b, h, w, :]                    x, y: [B, H, W, C]
  log|det dy/dx| = H * W * sum_c log_s_c               (nats, [B])
and W^-1 = (U + diag(s))^-1 L^-1 P^T by two triangular solves.

Learned: 'lower', 'upper' (full C x C params, masked to their triangles),
'log_s'. Fixed: 'perm' and 'sign_s' live in the 'constants' collection (they
are random at init, so they must be saved with the weights, but they are not
trained). With identity_init, P = L = I, U = 0, s = 1: W = I and log-det 0;
otherwise the factors are the LU decomposition of a random orthogonal matrix.
"""
import jax
import jax.numpy as jnp
import flax.linen as nn

from genfam.bijectors.base import Bijector, per_example, spatial_size
from genfam.bijectors.conv1x1 import mix_channels


def lu_init(rng, c: int, identity: bool):
  """(perm, lower, upper, sign_s, log_s) with P L (U + diag(sign_s e^log_s)) orthogonal (or I)."""
  if identity:
    eye = jnp.eye(c, dtype=jnp.float32)
    return eye, eye, jnp.zeros((c, c), jnp.float32), jnp.ones((c,), jnp.float32), jnp.zeros((c,), jnp.float32)
  w = nn.initializers.orthogonal()(rng, (c, c), jnp.float32)
  perm, lower, upper = jax.scipy.linalg.lu(w)
  s = jnp.diag(upper)
  return perm, lower, jnp.triu(upper, 1), jnp.sign(s), jnp.log(jnp.abs(s))


class LUConv1x1(Bijector):
  """y = W x per pixel with W = P L (U + diag(sign_s exp(log_s)))."""
  identity_init: bool = False

  @nn.compact
  def _factors(self, c: int):  # -> P [C, C], L [C, C], U + diag(s) [C, C], log_s [C]
    if self.is_initializing() and not self.has_variable("params", "log_s"):
      factors = lu_init(self.make_rng("params"), c, self.identity_init)
    else:  # only the shapes matter: Linen checks them against the stored values
      factors = [jnp.zeros(s, jnp.float32) for s in [(c, c), (c, c), (c, c), (c,), (c,)]]
    perm = self.variable("constants", "perm", lambda: factors[0]).value
    sign_s = self.variable("constants", "sign_s", lambda: factors[3]).value
    lower = self.param("lower", lambda _: factors[1])
    upper = self.param("upper", lambda _: factors[2])
    log_s = self.param("log_s", lambda _: factors[4])
    lower = jnp.tril(lower, -1) + jnp.eye(c, dtype=lower.dtype)
    upper = jnp.triu(upper, 1) + jnp.diag(sign_s * jnp.exp(log_s))
    return perm, lower, upper, log_s

  def weight(self, c: int):  # -> W [C, C]
    perm, lower, upper, _ = self._factors(c)
    return perm @ lower @ upper

  def forward_and_log_det(self, x):  # [B, H, W, C] -> ([B, H, W, C], [B])
    perm, lower, upper, log_s = self._factors(x.shape[-1])
    w = perm @ lower @ upper
    return mix_channels(x, w), per_example(spatial_size(x) * jnp.sum(log_s), x)

  def inverse_and_log_det(self, y):  # [B, H, W, C] -> ([B, H, W, C], [B])
    perm, lower, upper, log_s = self._factors(y.shape[-1])
    solve = jax.scipy.linalg.solve_triangular
    l_inv_pt = solve(lower, perm.T, lower=True, unit_diagonal=True)
    w_inv = solve(upper, l_inv_pt, lower=False)
    return mix_channels(y, w_inv), per_example(-spatial_size(y) * jnp.sum(log_s), y)
