"""The bijector interface shared by every flow layer (distrax-style, Flax Linen).

A bijector is a Linen module f with two methods, both batched over the
leading axis:

  forward_and_log_det(x) -> (y, log|det df/dx|)        y = f(x)
  inverse_and_log_det(y) -> (x, log|det df^-1/dy|)     x = f^-1(y)

Log-determinants are in nats, one number per example ([B]), summed over every
non-batch dimension, and inverse_and_log_det(f(x))[1] == -forward log-det at x.
Everything else (forward, inverse) is derived. Parameters are ordinary Linen
variables; layers whose parameters are initialised from data (actnorm) get
that data through `module.init(rng, x, method=module.forward_and_log_det)`.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp


class Bijector(nn.Module):
  """Base class: subclasses implement the two `*_and_log_det` methods."""

  def forward_and_log_det(self, x):  # [B, ...] -> ([B, ...], [B])
    raise NotImplementedError

  def inverse_and_log_det(self, y):  # [B, ...] -> ([B, ...], [B])
    raise NotImplementedError

  def forward(self, x):  # [B, ...] -> [B, ...]
    return self.forward_and_log_det(x)[0]

  def inverse(self, y):  # [B, ...] -> [B, ...]
    return self.inverse_and_log_det(y)[0]


def sum_except_batch(a: jax.Array) -> jax.Array:
  """[B, ...] -> [B]: the sum over every non-batch axis."""
  return jnp.sum(a.reshape(a.shape[0], -1), axis=-1)


def per_example(value: jax.Array, x: jax.Array) -> jax.Array:
  """A log-det that is the same for every example (a scalar) -> [B] like x."""
  return jnp.broadcast_to(jnp.asarray(value, x.dtype), (x.shape[0],))


def spatial_size(x: jax.Array) -> int:
  """H * W of an image batch [B, H, W, C] (product of the axes between B and C)."""
  return int(math.prod(x.shape[1:-1]))
