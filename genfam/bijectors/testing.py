"""Helpers for checking bijectors (used by the tests; kept in the package so any
test layout can import them).

Bijectors are called through `module.apply(variables, ..., method=...)`.
Noise comes from numpy: these checks only need generic numbers, and numpy
draws cost no XLA compilation.
"""
import jax
import jax.numpy as jnp
import numpy as np


def init(bijector, rng, x, **kwargs):
  """Variables of `bijector`, initialised through forward_and_log_det on x."""
  return bijector.init(rng, x, method=bijector.forward_and_log_det, **kwargs)


def perturb(variables, seed: int, scale: float = 0.1):
  """Adds N(0, scale^2) numpy noise to every 'params' leaf (other collections kept).

  Zero-initialised layers make a fresh flow (nearly) the identity; the
  property checks need a generic point in parameter space.
  """
  if "params" not in variables:
    return variables
  rng = np.random.default_rng(seed)
  noisy = jax.tree.map(lambda p: p + scale * rng.standard_normal(p.shape).astype(p.dtype),
                       variables["params"])
  return dict(variables, params=noisy)


def cast(tree, dtype):
  """Floating leaves -> jax arrays of `dtype`; integer leaves kept as they are."""
  def one(a):
    a = np.asarray(a) if not isinstance(a, jax.Array) else a
    return jnp.asarray(a, dtype) if jnp.issubdtype(a.dtype, jnp.floating) else jnp.asarray(a)
  return jax.tree.map(one, tree)


def jacobian_log_det(fn, x):
  """(sign, log|det J|) of fn: [1, ...] -> [1, ...] at the single example x, by
  slogdet of the dense D x D Jacobian (any output shape with D elements)."""
  shape = x.shape

  def flat(v):  # [D] -> [D]
    return fn(v.reshape(shape)).reshape(-1)

  return jnp.linalg.slogdet(jax.jacfwd(flat)(x.reshape(-1)))
