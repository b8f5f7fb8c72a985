"""Actnorm (Glow): a per-channel affine map with data-dependent initialisation.

  y = (x - loc) * exp(log_scale)                      x, y: [B, H, W, C]
  log|det dy/dx| = H * W * sum_c log_scale_c           (nats, [B])

`loc` and `log_scale` are ordinary Linen params (so they are saved, restored
and averaged with the other weights). When the module is initialised with
`init(rng, x, method=ActNorm.forward_and_log_det)` they are set from that
batch so that y has per-channel mean 0 and standard deviation 1 over
(B, H, W). A channel whose standard deviation is below `min_std` (e.g. a
constant channel) gets log_scale 0 (scale 1) instead of a huge or infinite
scale, so its output stays finite (and equals x - mean, i.e. 0).
"""
import jax
import jax.numpy as jnp
import flax.linen as nn

from genfam.bijectors.base import Bijector, per_example, spatial_size


class ActNorm(Bijector):
  """Per-channel affine layer initialised to normalise its first batch."""
  min_std: float = 1e-4

  @nn.compact
  def _loc_and_log_scale(self, x):  # [B, ..., C] -> ([C], [C])
    def moments():
      xs = jax.lax.stop_gradient(x).reshape(-1, x.shape[-1])
      mean = jnp.mean(xs, axis=0)
      std = jnp.sqrt(jnp.mean(jnp.square(xs - mean), axis=0))
      return mean, std

    def init_loc(_):
      return moments()[0]

    def init_log_scale(_):
      std = moments()[1]
      safe = jnp.where(std > self.min_std, std, 1.0)
      return jnp.where(std > self.min_std, -jnp.log(safe), 0.0)

    loc = self.param("loc", init_loc)
    log_scale = self.param("log_scale", init_log_scale)
    return loc, log_scale

  def forward_and_log_det(self, x):  # [B, H, W, C] -> ([B, H, W, C], [B])
    loc, log_scale = self._loc_and_log_scale(x)
    y = (x - loc) * jnp.exp(log_scale)
    return y, per_example(spatial_size(x) * jnp.sum(log_scale), x)

  def inverse_and_log_det(self, y):  # [B, H, W, C] -> ([B, H, W, C], [B])
    # Initialising through the inverse would normalise y, not x; initialise
    # through forward_and_log_det.
    loc, log_scale = self._loc_and_log_scale(y)
    x = y * jnp.exp(-log_scale) + loc
    return x, per_example(-spatial_size(y) * jnp.sum(log_scale), y)
