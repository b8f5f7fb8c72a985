"""Continuous-time variational diffusion (genfam.diffusion.continuous) against closed forms (float64):
its T-step diffusion loss is DDPM's bound term by term, and it converges to the continuous loss,
known in closed form for Gaussian data; the reconstruction term is the discretized decoder's."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from genfam.diffusion import bound, continuous, samplers, schedules
from genfam.families.vdm import MonotoneGamma
from genfam.family import check_likelihood_kind

GAMMA_MIN, GAMMA_MAX = -13.3, 5.0


def _phi(z):
  return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _monotone_gamma(seed=0):
  """A learned-schedule network with random (non-linear) weights: gamma(0), gamma(1) fixed."""
  module = MonotoneGamma(GAMMA_MIN, GAMMA_MAX, 16)
  params = module.init(jax.random.PRNGKey(seed), jnp.zeros((1,), jnp.float64))["params"]
  params = dict(params, w2=jnp.asarray(np.random.default_rng(seed).uniform(0, 40, 16)))
  return lambda t: module.apply({"params": params}, t)


def _ddpm_schedule_from_gamma(gamma_fn, num_steps):
  """DDPM schedule with T + 1 steps whose alpha-bars are sigmoid(-gamma(j / T)), j = 0 .. T."""
  abar = np.asarray(jax.nn.sigmoid(-gamma_fn(jnp.arange(num_steps + 1, dtype=jnp.float64) / num_steps)))
  betas = 1.0 - abar / np.append(1.0, abar[:-1])
  return schedules.schedule_from_betas(betas, jnp.float64)


class DiscreteIsDdpmBoundTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("linear", "monotone_net")
  def test_each_step_is_the_ddpm_posterior_variance_kl(self, schedule):
    """T L_i (continuous.discrete_diffusion_loss / T) == DDPM's KL term at the same z_t, for every i."""
    with jax.enable_x64(True):
      gamma_fn = continuous.linear_gamma(GAMMA_MIN, GAMMA_MAX) if schedule == "linear" else _monotone_gamma()
      num_steps, num_bins = 8, 17
      s = _ddpm_schedule_from_gamma(gamma_fn, num_steps)
      rng = np.random.default_rng(0)
      x_int = jnp.asarray(rng.integers(0, num_bins, (3, 2, 2, 1)))
      x0 = x_int * 2.0 / (num_bins - 1) - 1.0
      w = jnp.asarray(rng.normal(size=(4, 4)) * 0.5)
      eps_fn = lambda z, t: (z.reshape(z.shape[0], -1) @ w).reshape(z.shape) + 0.1 * t.reshape(-1, 1, 1, 1)

      def both(i, eps):  # i: int array, the step
        j = jnp.full((3,), i)
        ddpm = bound.vlb_term(lambda z, t: eps_fn(z, t / num_steps), s, s.posterior_log_variance, x_int, x0, j,
                              eps, num_bins)
        gamma_s, gamma_t = gamma_fn(jnp.full((3,), (i - 1) / num_steps)), gamma_fn(jnp.full((3,), i / num_steps))
        z_t = continuous.q_sample(x0, gamma_t, eps)
        vdm = continuous.discrete_diffusion_loss(eps, eps_fn(z_t, jnp.full((3,), i / num_steps)), gamma_s, gamma_t,
                                                 num_steps) / num_steps
        return ddpm, vdm

      step = self.variant(both)
      for i in range(1, num_steps + 1):
        eps = jax.random.normal(jax.random.PRNGKey(i), x0.shape, jnp.float64)
        ddpm, vdm = step(jnp.asarray(i), eps)
        assert float(jnp.min(vdm)) > 1e-4
        np.testing.assert_allclose(vdm, ddpm, rtol=1e-7, err_msg=f"i={i}")


def _gaussian_expectations(gamma_fn, m=0.3, sd=0.5, num_t=200, nodes=6):
  """E over t ~ U(0,1), x ~ N(m, sd^2), eps ~ N(0, 1) of the continuous loss, and over i of the T-step
  loss, with the optimal eps_hat = E[eps | z_t] = sigma (z - alpha m) / (alpha^2 sd^2 + sigma^2): quadrature
  (Gauss-Legendre in t, Gauss-Hermite in x and eps, exact for the quadratic integrand)."""
  herm, herm_w = np.polynomial.hermite_e.hermegauss(nodes)
  herm_w = herm_w / herm_w.sum()
  xs = jnp.asarray(np.repeat(m + sd * herm, nodes)).reshape(-1, 1)        # [N, 1]: data dimension D = 1
  eps = jnp.asarray(np.tile(herm, nodes)).reshape(-1, 1)
  weight = jnp.asarray(np.outer(herm_w, herm_w).ravel())                  # [N]
  n = xs.shape[0]

  def eps_hat(z, gamma):
    alpha, sigma = continuous.alpha_sigma(gamma[:, None])
    return sigma * (z - alpha * m) / (alpha ** 2 * sd ** 2 + sigma ** 2)

  def continuous_at(t):  # E_{x, eps} at scalar t
    gamma, slope = continuous.gamma_and_slope(gamma_fn, jnp.full((n,), t))
    z = continuous.q_sample(xs, gamma, eps)
    return jnp.sum(weight * continuous.diffusion_loss(eps, eps_hat(z, gamma), slope))

  leg, leg_w = np.polynomial.legendre.leggauss(num_t)
  ts = jnp.asarray(0.5 * (leg + 1.0))
  l_inf = float(jnp.sum(0.5 * jnp.asarray(leg_w) * jax.jit(jax.vmap(continuous_at))(ts)))

  @jax.jit
  def at(i, num_steps):  # E_{x, eps} of the T-step loss at step i; i, num_steps float arrays
    g_s, g_t = gamma_fn(jnp.full((n,), (i - 1) / num_steps)), gamma_fn(jnp.full((n,), i / num_steps))
    z = continuous.q_sample(xs, g_t, eps)
    return jnp.sum(weight * continuous.discrete_diffusion_loss(eps, eps_hat(z, g_t), g_s, g_t, num_steps))

  def discrete(num_steps):  # E_i, i ~ U{1 .. T}
    steps = jnp.arange(1, num_steps + 1, dtype=jnp.float64)
    return float(jnp.mean(jax.jit(jax.vmap(at, (0, None)))(steps, jnp.float64(num_steps))))

  return l_inf, discrete


def test_diffusion_loss_known_answer_and_discrete_converges_to_it():
  """Gaussian data: L_inf = 1/2 log((1 + sd^2 SNR(0)) / (1 + sd^2 SNR(1))) per dimension, whatever the
  schedule's shape between its endpoints; L_T is the right Riemann sum of the same integral in SNR,
  decreasing to L_inf as T grows (VDM's Sec. 4)."""
  m, sd = 0.3, 0.5
  want = 0.5 * (math.log1p(sd ** 2 * math.exp(-GAMMA_MIN)) - math.log1p(sd ** 2 * math.exp(-GAMMA_MAX)))
  with jax.enable_x64(True):
    for gamma_fn in (continuous.linear_gamma(GAMMA_MIN, GAMMA_MAX), _monotone_gamma(1)):
      l_inf, discrete = _gaussian_expectations(gamma_fn, m, sd)
      np.testing.assert_allclose(l_inf, want, rtol=1e-6)
      g = np.asarray(gamma_fn(jnp.linspace(0.0, 1.0, 1001)))
      snr = np.exp(-g)
      gaps = []
      for num_steps in (10, 100, 1000):
        got = discrete(num_steps)
        snr_t = snr[::1000 // num_steps]                                      # SNR(i / T), i = 0 .. T
        riemann = np.sum(0.5 * (snr_t[:-1] - snr_t[1:]) * sd ** 2 / (1.0 + sd ** 2 * snr_t[1:]))
        np.testing.assert_allclose(got, riemann, rtol=1e-8)
        gaps.append(got - l_inf)
      assert gaps[0] > gaps[1] > gaps[2] > 0, gaps
      assert gaps[2] < 0.02 * want                                            # within 2% at T = 1000


class ReconstructionTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(256, 17)
  def test_reconstruction_is_the_discretized_decoder(self, num_bins):
    """-log P(x | z_0): discretized N(z_0 / alpha_0, exp(gamma_0)) over K bins with open edges, by hand."""
    with jax.enable_x64(True):
      rng = np.random.default_rng(2)
      x_int = rng.integers(0, num_bins, (2, 3, 3, 1))
      x_int[0, 0, 0, 0], x_int[0, 0, 1, 0] = 0, num_bins - 1                 # both open edge bins
      x_int = jnp.asarray(x_int)
      x0 = x_int * 2.0 / (num_bins - 1) - 1.0
      gamma_0 = 2.0 * math.log(1.5 / (num_bins - 1))                          # decoder std 1.5 half-bins
      eps = jax.random.normal(jax.random.PRNGKey(0), x0.shape, jnp.float64)
      got = self.variant(lambda e: continuous.reconstruction_nll(x_int, x0, gamma_0, e, num_bins))(eps)
      at_mean = self.variant(lambda e: continuous.reconstruction_nll(x_int, x0, gamma_0, 0 * e, num_bins))(eps)

      alpha, sigma = math.sqrt(1 / (1 + math.exp(gamma_0))), math.sqrt(1 / (1 + math.exp(-gamma_0)))
      std, half = math.exp(0.5 * gamma_0), 1.0 / (num_bins - 1)
      for b in range(2):
        want, want_at_mean = 0.0, 0.0
        for k, c, e in zip(np.ravel(x_int[b]), np.ravel(x0[b]), np.ravel(eps[b])):
          mean = (alpha * c + sigma * e) / alpha
          lo = 0.0 if k == 0 else _phi((c - half - mean) / std)
          hi = 1.0 if k == num_bins - 1 else _phi((c + half - mean) / std)
          want -= math.log(hi - lo)
          want_at_mean -= math.log(_phi(half / std) if k in (0, num_bins - 1) else 2 * _phi(half / std) - 1)
        # genfam.likelihood.discretized places the bin edges in float32 (2e-6 relative here at K = 256)
        np.testing.assert_allclose(got[b], want, rtol=1e-5)
        np.testing.assert_allclose(at_mean[b], want_at_mean, rtol=1e-5)
      # ... which is DDPM's decoder term with mean z_0 / alpha_0 and log variance gamma_0
      z0 = continuous.q_sample(x0, jnp.full((2,), gamma_0), eps)
      np.testing.assert_allclose(got, bound.decoder_nll(x_int, z0 / alpha, gamma_0, num_bins), rtol=1e-12)

  def test_prior_kl_closed_form(self):
    with jax.enable_x64(True):
      x0 = jnp.asarray([[0.5, -1.0, 0.0]])
      s2 = 1 / (1 + math.exp(-GAMMA_MAX))
      want = sum(0.5 * (s2 + (1 - s2) * v ** 2 - math.log(s2) - 1) for v in (0.5, -1.0, 0.0))
      np.testing.assert_allclose(continuous.prior_kl(x0, GAMMA_MAX), [want], rtol=1e-12)


def test_stratified_times_and_oracle_sampler():
  ts = continuous.stratified_times(jax.random.PRNGKey(0), 5, 4)
  assert ts.shape == (4, 5) and bool(jnp.all((ts >= 0) & (ts < 1)))
  np.testing.assert_allclose(np.sort(np.asarray(ts), axis=0)[1:] - np.sort(np.asarray(ts), axis=0)[:-1], 0.25,
                             atol=1e-6)
  # A data set of one image: the exact eps_hat makes ancestral sampling return that image.
  with jax.enable_x64(True):
    x_int = jnp.asarray(np.random.default_rng(3).integers(0, 256, (1, 4, 4, 1)))
    x_star = x_int * 2.0 / 255 - 1.0
    gamma_fn = continuous.linear_gamma(GAMMA_MIN, GAMMA_MAX)

    def eps_fn(z, t):
      alpha, sigma = continuous.alpha_sigma(gamma_fn(t).reshape(-1, 1, 1, 1))
      return (z - alpha * x_star) / sigma

    x = jax.jit(lambda r: continuous.sample(eps_fn, gamma_fn, r, (3, 4, 4, 1), 10, jnp.float64))(
        jax.random.PRNGKey(1))
    np.testing.assert_array_equal(samplers.to_pixels(x, 256), jnp.broadcast_to(x_int, (3, 4, 4, 1)))


def test_likelihood_kind_label():
  assert check_likelihood_kind("vlb-continuous-100t") == "vlb-continuous-100t"
  for bad in ("vlb-continuous", "vlb-continuous-t", "vlb-continuous-100"):
    with pytest.raises(ValueError, match="vlb-continuous-<k>t"):
      check_likelihood_kind(bad)
