"""Chain: the composition f = f_n o ... o f_1 of bijectors.

forward applies f_1 first; log|det df/dx| = sum_i log|det df_i/dx_i| (nats,
[B]). inverse runs the layers backwards and sums their inverse log-dets.
"""
from typing import Sequence

from genfam.bijectors.base import Bijector


class Chain(Bijector):
  """Composition of `bijectors`, applied in list order by `forward`."""
  bijectors: Sequence[Bijector]

  def forward_and_log_det(self, x):  # [B, ...] -> ([B, ...], [B])
    log_det = 0.0
    for b in self.bijectors:
      x, ld = b.forward_and_log_det(x)
      log_det = log_det + ld
    return x, log_det

  def inverse_and_log_det(self, y):  # [B, ...] -> ([B, ...], [B])
    log_det = 0.0
    for b in reversed(self.bijectors):
      y, ld = b.inverse_and_log_det(y)
      log_det = log_det + ld
    return y, log_det
