"""The VAE's Gaussian algebra and bound estimators, on arrays and on a
linear-Gaussian model whose log p(x) is known in closed form.

Linear-Gaussian model: p(z) = N(0, I_L), p(x|z) = N(W z + c, sigma^2 I_D), so
  p(x)   = N(c, W W^T + sigma^2 I),
  p(z|x) = N(S W^T (x - c) / sigma^2, S),  S = (I + W^T W / sigma^2)^-1.
With the exact posterior as q every importance weight equals p(x), so ELBO =
IWAE-k = log p(x); with any other q the IWAE bound tightens towards log p(x)
as k grows.
"""
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized
from jax.scipy.stats import multivariate_normal  # reference for the diagonal Gaussian only

from genfam.families import vae


class GaussianTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_log_prob_matches_scipy(self):
    rng = np.random.default_rng(0)
    z, mean, log_scale = (jnp.asarray(rng.normal(size=(5, 3)), jnp.float32) for _ in range(3))
    got = self.variant(vae.diag_gaussian_log_prob)(z, mean, log_scale)
    want = jnp.stack([multivariate_normal.logpdf(z[i], mean[i], jnp.diag(jnp.exp(2 * log_scale[i])))
                      for i in range(5)])
    np.testing.assert_allclose(got, want, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_kl_matches_monte_carlo(self):
    """Analytic KL(q || p) per dim == E_q[log q(z) - log p(z)] (100k draws)."""
    mean_q = jnp.array([0.0, 1.5, -2.0, 0.3])
    log_scale_q = jnp.array([0.0, -1.0, 0.5, -2.0])
    mean_p = jnp.array([0.0, 0.0, 1.0, 0.3])
    log_scale_p = jnp.array([0.0, 0.0, -0.5, 0.7])
    kl = self.variant(vae.gaussian_kl)(mean_q, log_scale_q, mean_p, log_scale_p)   # [4]
    z = mean_q + jnp.exp(log_scale_q) * jax.random.normal(jax.random.key(0), (100_000, 4))
    # per-dimension log densities: a diagonal Gaussian in 1-D slices
    log_q = jax.vmap(vae.diag_gaussian_log_prob, (1, 0, 0), 1)(z[..., None], mean_q[:, None],
                                                                 log_scale_q[:, None])
    log_p = jax.vmap(vae.diag_gaussian_log_prob, (1, 0, 0), 1)(z[..., None], mean_p[:, None],
                                                                 log_scale_p[:, None])
    diff = log_q - log_p                                                          # [N, 4]
    stderr = jnp.std(diff, axis=0) / math.sqrt(diff.shape[0])
    np.testing.assert_array_less(jnp.abs(jnp.mean(diff, axis=0) - kl), 4 * stderr + 1e-6)
    np.testing.assert_allclose(kl[0], 0.0, atol=1e-7)                             # q == p

  def test_active_units(self):
    rng = np.random.default_rng(0)
    mean = np.zeros((64, 3), np.float32)
    mean[:, 0] = rng.normal(size=64)            # varies across x: active
    mean[:, 1] = 0.05 * rng.normal(size=64)     # variance ~0.0025 < 0.01: inactive
    mean[:, 2] = 3.0                            # constant: inactive
    assert int(vae.active_units(jnp.asarray(mean))) == 1


class EstimatorTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_one_sample_iwae_is_the_elbo_sample(self):
    rng = np.random.default_rng(1)
    parts = [jnp.asarray(rng.normal(size=(1, 7)), jnp.float32) for _ in range(3)]
    iwae = self.variant(vae.iwae_from_samples)(*parts)
    elbo = self.variant(vae.elbo_from_samples)(*parts)
    np.testing.assert_allclose(iwae, elbo, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((1000, 64), (1000, 1000), (10, 3), (1, 8))
  def test_chunked_equals_all_at_once(self, num_samples, chunk):
    table = jax.random.normal(jax.random.key(0), (num_samples, 5)) * 3.0          # [S, B]
    padded = jnp.concatenate([table, jnp.full((chunk, 5), 1e6)])                  # junk past S

    def log_weight_fn(i):  # -> [chunk', B]
      size = min(chunk, num_samples)
      return jax.lax.dynamic_slice_in_dim(padded, i * size, size)

    fn = functools.partial(vae.chunked_log_mean_exp, log_weight_fn, num_samples)
    got = self.variant(fn)()
    want = jax.nn.logsumexp(table, axis=0) - math.log(num_samples)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _linear_gaussian(diagonal_posterior: bool):
  """W [D, L], c [D], sigma, and a data batch x [B, D] drawn from the model (numpy float64)."""
  rng = np.random.default_rng(2)
  d, l, b = 6, 3, 8
  w = rng.normal(size=(d, l))
  if diagonal_posterior:  # orthogonal columns make W^T W, hence the posterior, diagonal
    q, _ = np.linalg.qr(w)
    w = q * np.array([2.0, 1.0, 0.5])
  c, sigma = rng.normal(size=d), 0.7
  x = (rng.normal(size=(b, l)) @ w.T) + c + sigma * rng.normal(size=(b, d))
  return w, c, sigma, x


def _mvn_log_prob(v, mean, cov):  # numpy: v [..., n], mean [..., n], cov [n, n] -> [...]
  diff = v - mean
  _, logdet = np.linalg.slogdet(cov)
  maha = np.einsum("...i,ij,...j->...", diff, np.linalg.inv(cov), diff)
  return -0.5 * (maha + logdet + v.shape[-1] * math.log(2 * math.pi))


def _exact(w, c, sigma, x):
  """The closed forms in numpy float64: log p(x) [B], posterior mean [B, L], covariance [L, L]."""
  d, l = w.shape
  log_px = _mvn_log_prob(x, c, w @ w.T + sigma ** 2 * np.eye(d))
  cov = np.linalg.inv(np.eye(l) + w.T @ w / sigma ** 2)
  mean = (x - c) @ w @ cov / sigma ** 2        # cov symmetric
  return log_px, mean, cov


def _log_px_z(w, c, sigma, x, z):  # z [S, B, L] -> [S, B], with the module's Gaussian
  return vae.diag_gaussian_log_prob(x, z @ w.T + c, jnp.full(x.shape[-1], math.log(sigma)))


def test_elbo_with_exact_posterior_is_log_px():
  w, c, sigma, x = _linear_gaussian(diagonal_posterior=False)
  log_px, mean, cov = _exact(w, c, sigma, x)
  # Full-covariance q = p(z|x): every sample's log weight is log p(x).
  rng = np.random.default_rng(0)
  z = mean + rng.normal(size=(16,) + mean.shape) @ np.linalg.cholesky(cov).T      # [S, B, L]
  log_q = _mvn_log_prob(z, mean, cov)
  with jax.enable_x64(True):
    log_p = vae.diag_gaussian_log_prob(jnp.asarray(z), 0.0, jnp.zeros(w.shape[1]))
    log_lik = _log_px_z(w, c, sigma, x, jnp.asarray(z))
    np.testing.assert_allclose(vae.elbo_from_samples(log_lik, log_q, log_p), log_px, rtol=1e-10)
    np.testing.assert_allclose(vae.iwae_from_samples(log_lik, log_q, log_p), log_px, rtol=1e-10)


def test_analytic_elbo_with_exact_diagonal_posterior_is_log_px():
  """E_q log p(x|z) - KL(q || p) in closed form, KL from `gaussian_kl`."""
  w, c, sigma, x = _linear_gaussian(diagonal_posterior=True)
  log_px, mean, cov = _exact(w, c, sigma, x)
  np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-12)
  log_scale = 0.5 * np.log(np.diag(cov))                                           # [L]
  resid = x - mean @ w.T - c                                                       # [B, D]
  expected_log_lik = (-0.5 * (np.sum(resid ** 2, -1) + np.trace(w @ cov @ w.T)) / sigma ** 2
                      - 0.5 * x.shape[-1] * math.log(2 * math.pi * sigma ** 2))
  with jax.enable_x64(True):
    kl = jnp.sum(vae.gaussian_kl(jnp.asarray(mean), jnp.asarray(log_scale), 0.0, 0.0), axis=-1)
    np.testing.assert_allclose(expected_log_lik - kl, log_px, rtol=1e-10)


def test_iwae_approaches_log_px():
  """q = the exact posterior's diagonal with 1.5x its std and a shifted mean.
  From 10^4 weights per example, IWAE-k is averaged over the 10^4 / k disjoint
  groups of k: the mean gap to log p(x) shrinks with k and is small at 10^4."""
  w, c, sigma, x = _linear_gaussian(diagonal_posterior=False)
  log_px, mean, cov = _exact(w, c, sigma, x)
  num = 10_000
  with jax.enable_x64(True):
    q_mean = jnp.asarray(mean + 0.3)                                               # [B, L]
    q_log_scale = jnp.asarray(np.log(1.5 * np.sqrt(np.diag(cov))))                 # [L]

    @jax.jit
    def gaps_per_k(key):  # -> {k: [B] log p(x) - IWAE-k, averaged over the groups}
      z = q_mean + jnp.exp(q_log_scale) * jax.random.normal(key, (num,) + q_mean.shape)
      log_w = vae.log_importance_weights(                                           # [S, B]
          _log_px_z(w, c, sigma, x, z), vae.diag_gaussian_log_prob(z, q_mean, q_log_scale),
          vae.diag_gaussian_log_prob(z, 0.0, jnp.zeros_like(q_log_scale)))
      out = {}
      for k in (1, 10, 100, num):
        groups = log_w.reshape(k, num // k, -1)         # [k, groups, B]: disjoint groups of k
        bound = vae.iwae_from_samples(groups, jnp.zeros(()), jnp.zeros(()))       # [groups, B]
        out[k] = log_px - jnp.mean(bound, axis=0)
      return out

    draws = [gaps_per_k(jax.random.key(r)) for r in range(4)]
    per_k = {k: np.concatenate([d[k] for d in draws]) for k in draws[0]}            # [4B] each
  gaps = [float(np.mean(v)) for v in per_k.values()]
  stderrs = [float(np.std(v) / np.sqrt(v.size)) for v in per_k.values()]
  print("IWAE gaps (nats) at k = 1, 10, 100, 10^4:", gaps, "+-", stderrs)
  assert all(g > -4 * e for g, e in zip(gaps, stderrs)), (gaps, stderrs)  # a bound, up to noise
  assert gaps[0] > gaps[1] > gaps[2] > gaps[3], gaps
  assert abs(gaps[-1]) < 0.01 * gaps[0] and abs(gaps[-1]) < 0.02, gaps
