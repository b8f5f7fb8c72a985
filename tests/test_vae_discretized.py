"""Discrete pixel likelihoods (genfam.likelihood.discretized) and the VAE's PixelDecoder.

The K bin probabilities of one pixel must sum to one for any location and
scale, extreme ones included, since the reported bits/dim is only a bound on
the discrete likelihood if they do.
"""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from genfam.likelihood import discretized
from genfam.nets.vae_nets import PixelDecoder

BINS = (256, 17)
# Locations outside, on and inside [-1, 1] (0.0 is a bin edge for K = 256, a
# bin centre for K = 17); log-scales from far below a bin width to far above.
MEANS = (-20.0, -3.0, -1.0, -0.999, 0.0, 1.0 / 255, 0.37, 1.0, 3.0, 20.0)
LOG_SCALES = (-12.0, -9.0, -7.0, -3.0, 0.0, 2.0, 5.0, 9.0)


def _grid(dtype):
  mean, log_scale = np.meshgrid(np.array(MEANS), np.array(LOG_SCALES), indexing="ij")
  return jnp.asarray(mean.ravel(), dtype), jnp.asarray(log_scale.ravel(), dtype)  # [N] each


def _all_bins_log_prob(fn, num_bins, mean, log_scale):
  """log P(k) for every bin k and every (mean, log_scale) pair: [N, K]."""
  bins = jnp.arange(num_bins)[None, :]                                      # [1, K]
  return fn(bins, mean[:, None], log_scale[:, None], num_bins=num_bins)


def _mixture_of_one(x, mean, log_scale, num_bins):
  return discretized.discretized_logistic_mixture_log_prob(
      x, jnp.zeros_like(mean)[..., None], mean[..., None], log_scale[..., None], num_bins)


FUNCTIONS = {
    "gaussian": discretized.discretized_gaussian_log_prob,
    "logistic": discretized.discretized_logistic_log_prob,
    "mixture_of_one": _mixture_of_one,
}


class SumsToOneTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(name=tuple(FUNCTIONS), num_bins=BINS)
  def test_float32(self, name, num_bins):
    mean, log_scale = _grid(jnp.float32)
    fn = self.variant(functools.partial(_all_bins_log_prob, FUNCTIONS[name], num_bins))
    log_p = fn(mean, log_scale)
    self.assertTrue(bool(jnp.all(jnp.isfinite(log_p))))
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_p), axis=-1), 1.0, atol=1e-5)

  @parameterized.product(name=tuple(FUNCTIONS), num_bins=BINS)
  def test_float64(self, name, num_bins):
    with jax.enable_x64(True):
      mean, log_scale = _grid(jnp.float64)
      log_p = jax.jit(functools.partial(_all_bins_log_prob, FUNCTIONS[name], num_bins))(
          mean, log_scale)
      self.assertEqual(log_p.dtype, jnp.float64)
      np.testing.assert_allclose(jnp.sum(jnp.exp(log_p), axis=-1), 1.0, atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*BINS)
  def test_mixture(self, num_bins):
    rng = np.random.default_rng(0)
    m = 4
    logits = jnp.asarray(rng.normal(size=(32, m)) * 5, jnp.float32)               # peaked weights too
    means = jnp.asarray(rng.choice(MEANS, size=(32, m)), jnp.float32)
    log_scales = jnp.asarray(rng.choice(LOG_SCALES, size=(32, m)), jnp.float32)
    bins = jnp.arange(num_bins)[None, :]                                          # [1, K]

    def all_bins(logits, means, log_scales):  # -> [32, K]
      return discretized.discretized_logistic_mixture_log_prob(
          bins, logits[:, None], means[:, None], log_scales[:, None], num_bins)

    log_p = self.variant(all_bins)(logits, means, log_scales)
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_p), axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("num_bins", BINS)
def test_mixture_of_one_is_the_logistic(num_bins):
  """A one-component mixture (float32) matches the discretized logistic computed in float64."""
  mean, log_scale = _grid(jnp.float32)
  one = _all_bins_log_prob(_mixture_of_one, num_bins, mean, log_scale)
  with jax.enable_x64(True):
    ref = _all_bins_log_prob(discretized.discretized_logistic_log_prob, num_bins,
                             mean.astype(jnp.float64), log_scale.astype(jnp.float64))
  ref = np.asarray(ref)
  np.testing.assert_allclose(jnp.exp(one), np.exp(ref), atol=1e-6)
  mask = ref > -30  # where the probability is not negligible the logs agree too
  np.testing.assert_allclose(np.asarray(one)[mask], ref[mask], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", tuple(FUNCTIONS))
def test_gradients_finite_at_extremes(name):
  mean, log_scale = _grid(jnp.float32)
  num_bins = 256

  def total(mean, log_scale):
    return jnp.sum(_all_bins_log_prob(FUNCTIONS[name], num_bins, mean, log_scale))

  grads = jax.jit(jax.grad(total, argnums=(0, 1)))(mean, log_scale)
  for g in grads:
    assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("kind", PixelDecoder.KINDS)
def test_pixel_decoder_mode_and_sample(kind):
  """mode = argmax over the K bins; sample frequencies match the probabilities."""
  num_bins, num_draws = 17, 10_000
  pixels = PixelDecoder(kind, num_bins, num_mixtures=3)
  out = jax.random.normal(jax.random.key(0), (2, 1, 1, 1, pixels.params_per_pixel))  # 2 pixels

  @jax.jit
  def check(out):
    bins = jnp.arange(num_bins).reshape(num_bins, 1, 1, 1, 1)
    probs = jnp.exp(pixels.pixel_log_prob(bins, out)).reshape(num_bins, 2)          # [K, 2]
    tiled = jnp.broadcast_to(out, (num_draws,) + out.shape)                          # N copies
    draws = pixels.sample(jax.random.key(1), tiled).reshape(num_draws, 2)            # [N, 2]
    freq = jnp.mean(draws[None] == jnp.arange(num_bins)[:, None, None], axis=1)      # [K, 2]
    return probs, pixels.mode(out).reshape(2), freq

  probs, mode, freq = check(out)
  np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
  np.testing.assert_array_equal(mode, jnp.argmax(probs, axis=0))
  np.testing.assert_allclose(freq, probs, atol=0.02)
  assert pixels.log_prob(jnp.zeros((2, 1, 1, 1), jnp.int32), out).shape == (2,)
