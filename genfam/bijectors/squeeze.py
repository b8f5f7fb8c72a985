"""Squeeze: space-to-depth on 2x2 blocks, [B, H, W, C] -> [B, H/2, W/2, 4C].

A permutation of the coordinates, so log|det| = 0. Output channel
(2*i + j) * C + c of pixel (h, w) is input pixel (2h + i, 2w + j), channel c.
"""
import jax
import jax.numpy as jnp

from genfam.bijectors.base import Bijector


def squeeze2x2(x: jax.Array) -> jax.Array:  # [B, H, W, C] -> [B, H/2, W/2, 4C]
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"squeeze needs even height and width, got {h}x{w}")
  x = x.reshape(b, h // 2, 2, w // 2, 2, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze2x2(y: jax.Array) -> jax.Array:  # [B, H, W, 4C] -> [B, 2H, 2W, C]
  b, h, w, c4 = y.shape
  if c4 % 4:
    raise ValueError(f"unsqueeze needs a channel count divisible by 4, got {c4}")
  c = c4 // 4
  y = y.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * h, 2 * w, c)


class Squeeze(Bijector):
  """The 2x2 squeeze as a bijector (no parameters, log-det 0)."""

  def forward_and_log_det(self, x):  # [B, H, W, C] -> ([B, H/2, W/2, 4C], [B])
    return squeeze2x2(x), jnp.zeros((x.shape[0],), x.dtype)

  def inverse_and_log_det(self, y):  # [B, H, W, 4C] -> ([B, 2H, 2W, C], [B])
    return unsqueeze2x2(y), jnp.zeros((y.shape[0],), y.dtype)
