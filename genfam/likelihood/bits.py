"""One conversion from nats to bits/dim, and uniform dequantization.

Data are discrete: x in {0 .. K-1}^D with K bins per stored pixel (K = 256 for
8-bit images, 17 for scikit-learn's digits) and D = H * W * C as stored.

Continuous-density models see y = (x + u) / K with u ~ U[0, 1)^D, y in [0, 1)^D.
Since the density of y is K^D times the density of x + u on the integer grid,
   -log P(x) <= E_u[-log p(y)] + D log K     (nats),
and the bits/dim reported is
   bpd = (NLL_nats(y) + D log K) / (D log 2).
A uniform density on [0, 1)^D (NLL 0) therefore gives log2(K) bits/dim:
exactly 8 for 8-bit data.
"""
import math

import jax
import jax.numpy as jnp


def nats_to_bpd(nats: jax.Array, num_dims: int) -> jax.Array:
  """Nats per example [B] -> bits per dimension [B]: nats / (D log 2)."""
  return nats / (num_dims * math.log(2.0))


def continuous_nll_to_bpd(nll_nats: jax.Array, num_dims: int, num_bins: int) -> jax.Array:
  """-log p(y) in nats of y in [0,1)^D -> bits/dim of the discrete data.

  bpd = (NLL_nats(y) + D log K) / (D log 2), K = num_bins.
  """
  return nats_to_bpd(nll_nats + num_dims * math.log(num_bins), num_dims)


def dequantize(rng: jax.Array, image: jax.Array, num_bins: int, dtype=jnp.float32) -> jax.Array:
  """Uniform dequantization: uint8 [B, H, W, C] in {0..K-1} -> (x + u) / K in [0, 1)."""
  u = jax.random.uniform(rng, image.shape, dtype)
  return (image.astype(dtype) + u) / num_bins


def num_dims(image_shape) -> int:
  """D: the stored pixel count of one example, H * W * C."""
  return int(math.prod(image_shape))
