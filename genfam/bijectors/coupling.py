"""Affine coupling (RealNVP, Glow) with a checkerboard or a channel mask.

The input x [B, H, W, C] is split by a binary mask b into a part x_a that is
kept and a part x_b that is transformed:
  y_a = x_a,   y_b = x_b * s(x_a) + t(x_a),
where (t, h) = conditioner(x_a) and s = exp(log_s(h)) > 0. The Jacobian is
triangular, so
  log|det dy/dx| = sum over transformed elements of log_s    (nats, [B]),
and the inverse is x_b = (y_b - t(y_a)) / s(y_a).

Masks:
  'checkerboard'  b[h, w] = (h + w + parity) % 2 marks the kept pixels (all
                  channels); the conditioner sees [x * b, b] (C + 1 channels)
                  and returns 2C channels; only the (1 - b) pixels change.
  'channel'       channels [:C//2] and [C//2:]; parity 0 keeps the first
                  part and transforms the second, parity 1 the reverse. The
                  conditioner returns 2 * n channels, n = transformed_channels().

Stable scale without batch norm (`scale_fn`):
  'sigmoid'  s = m + (1 - m) sigmoid(h + 2)  (Glow's sigmoid(h + 2), s ~ 0.88 at
             h = 0, with a floor m = min_scale so that s in (m, 1): the inverse
             never divides by an underflowed 0, whatever the activations)
  'tanh'     log_s = scale_c * tanh(h)    (learned per-channel scale_c, init 1,
                                           so |log_s| <= |scale_c|)
  'softclamp' log_s = a * tanh(h / a), a = max_log_scale fixed (log_s = h near 0,
             s = 1 at h = 0): s in (e^-a, e^a), so the inverse multiplies by at
             most e^a, whatever the conditioner says.
Why the bound matters (issue 30): the inverse x_b = (y_b - t) / s gains 1/s.
With 'sigmoid' that gain reaches 1/min_scale = 10^4, and a ReLU conditioner
fed an input a little outside what it was trained on returns an h that grows
with the input, so s falls to that floor and the next coupling's input is
further out still: a Glow trained on Fashion-MNIST sent a third of its
temperature-1 latents to activations of 10^13..10^34 (saturated lattice
images, some non-finite). 'softclamp' caps each coupling's gain at e^a, and
lets a coupling expand as well as contract (a sigmoid scale only contracts,
so the flow expands in actnorm and contracts selectively, which the inverse
turns into selective expansion).
The conditioner is passed in as a module (its last layer should start at
zero, e.g. `genfam.nets.conv.ZeroConv`); its output channels are
[t (n channels), h (n channels)].
"""
import math

import jax
import jax.numpy as jnp
import flax.linen as nn

from genfam.bijectors.base import Bijector, sum_except_batch

MASKS = ("checkerboard", "channel")
SCALE_FNS = ("sigmoid", "tanh", "softclamp")


def transformed_channels(mask: str, parity: int, channels: int) -> int:
  """n: how many channels the coupling transforms (the conditioner returns 2n)."""
  if mask == "checkerboard":
    return channels
  if mask == "channel":
    if channels < 2:
      raise ValueError("a channel-mask coupling needs at least 2 channels (squeeze first)")
    return channels - channels // 2 if parity % 2 == 0 else channels // 2
  raise ValueError(f"unknown coupling mask {mask!r}; use one of {MASKS}")


def checkerboard(height: int, width: int, parity: int, dtype=jnp.float32):  # -> [H, W, 1], 1 = kept
  hh, ww = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  return ((hh + ww + parity) % 2 == 0).astype(dtype)[..., None]


class AffineCoupling(Bijector):
  """y_b = x_b * s(x_a) + t(x_a), y_a = x_a; see the module docstring."""
  conditioner: nn.Module
  mask: str = "channel"
  parity: int = 0
  scale_fn: str = "sigmoid"
  min_scale: float = 1e-4
  max_log_scale: float = 1.0

  @nn.compact
  def _shift_and_log_scale(self, cond_input, n: int):  # [B, H, W, Cin] -> 2 x [B, H, W, n]
    out = self.conditioner(cond_input)
    if out.shape[-1] != 2 * n:
      raise ValueError(f"the coupling conditioner must return {2 * n} channels, got {out.shape[-1]}")
    shift, raw = out[..., :n], out[..., n:]
    if self.scale_fn == "sigmoid":
      m = self.min_scale  # log(m + (1 - m) sigmoid(h + 2)), stable for any h
      log_scale = jnp.logaddexp(math.log(m), math.log1p(-m) + jax.nn.log_sigmoid(raw + 2.0))
    elif self.scale_fn == "softclamp":
      a = self.max_log_scale
      log_scale = a * jnp.tanh(raw / a)
    elif self.scale_fn == "tanh":
      scale = self.param("tanh_scale", nn.initializers.ones, (n,))
      log_scale = scale * jnp.tanh(raw)
    else:
      raise ValueError(f"unknown coupling scale_fn {self.scale_fn!r}; use one of {SCALE_FNS}")
    return shift, log_scale

  def _split(self, x):  # channel mask: -> (kept, transformed)
    k = x.shape[-1] // 2
    first, second = x[..., :k], x[..., k:]
    return (first, second) if self.parity % 2 == 0 else (second, first)

  def _merge(self, kept, transformed):
    parts = (kept, transformed) if self.parity % 2 == 0 else (transformed, kept)
    return jnp.concatenate(parts, axis=-1)

  def _apply(self, x, inverse: bool):  # [B, H, W, C] -> ([B, H, W, C], [B])
    c = x.shape[-1]
    n = transformed_channels(self.mask, self.parity, c)
    if self.mask == "checkerboard":
      b = checkerboard(x.shape[1], x.shape[2], self.parity, x.dtype)
      kept = x * b
      cond_input = jnp.concatenate([kept, jnp.broadcast_to(b, x.shape[:-1] + (1,))], axis=-1)
      shift, log_scale = self._shift_and_log_scale(cond_input, n)
      # Zero t and log s on kept pixels before exp, so they cannot overflow there.
      shift, log_scale = (1.0 - b) * shift, (1.0 - b) * log_scale
      if inverse:
        moved = (x - shift) * jnp.exp(-log_scale)
      else:
        moved = x * jnp.exp(log_scale) + shift
      y = kept + (1.0 - b) * moved
      log_det = sum_except_batch(log_scale)
    else:
      kept, other = self._split(x)
      shift, log_scale = self._shift_and_log_scale(kept, n)
      if inverse:
        moved = (other - shift) * jnp.exp(-log_scale)
      else:
        moved = other * jnp.exp(log_scale) + shift
      y = self._merge(kept, moved)
      log_det = sum_except_batch(log_scale)
    return y, -log_det if inverse else log_det

  def forward_and_log_det(self, x):  # [B, H, W, C] -> ([B, H, W, C], [B])
    return self._apply(x, inverse=False)

  def inverse_and_log_det(self, y):  # [B, H, W, C] -> ([B, H, W, C], [B])
    return self._apply(y, inverse=True)
