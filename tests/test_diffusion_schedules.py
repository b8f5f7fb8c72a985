"""Schedules and the forward process: properties, and brute-force Gaussian conditioning."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.diffusion import bound, process, schedules
from genfam.likelihood.bits import nats_to_bpd


@pytest.mark.parametrize("name", schedules.SCHEDULES)
@pytest.mark.parametrize("num_steps", [10, 1000])
def test_schedule_properties(name, num_steps):
  with jax.enable_x64(True):
    s = schedules.make_schedule(name, num_steps, jnp.float64)
    abar, abar_prev = np.asarray(s.alpha_bars), np.asarray(s.alpha_bars_prev)
    betas = np.asarray(s.betas)
    assert s.num_steps == num_steps and betas.shape == (num_steps,)
    assert np.all(betas > 0) and np.all(betas <= schedules.MAX_BETA)
    assert np.all(np.diff(abar) < 0), "alpha-bar must decrease strictly"
    assert abar_prev[0] == 1.0 and np.array_equal(abar_prev[1:], abar[:-1])
    np.testing.assert_allclose(abar, np.cumprod(1.0 - betas), rtol=1e-12)
    # Ho et al.: beta-tilde_1 = 0, its log clipped to log beta-tilde_2.
    post = np.asarray(s.posterior_variance)
    assert post[0] == 0.0 and np.all(post[1:] > 0) and np.all(post[1:] <= betas[1:] + 1e-15)
    np.testing.assert_allclose(np.asarray(s.posterior_log_variance), np.log(np.append(post[1], post[1:])))
    np.testing.assert_allclose(np.asarray(schedules.model_log_variance(s, "beta"))[1:], np.log(betas[1:]))
    assert float(schedules.model_log_variance(s, "beta")[0]) == float(s.posterior_log_variance[0])


def test_linear_schedule_is_ho_at_t1000():
  betas = schedules.linear_betas(1000)
  assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
  np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999)


@pytest.mark.parametrize("name", schedules.SCHEDULES)
def test_prior_term_negligible_for_default_schedules(name):
  s = schedules.make_schedule(name, 1000)
  x0 = jnp.stack([jnp.ones((28, 28, 1)), -jnp.ones((28, 28, 1)), jnp.zeros((28, 28, 1))])  # worst case |x0| = 1
  prior = nats_to_bpd(bound.prior_kl(s, x0), 784)
  assert prior.shape == (3,) and np.all(np.asarray(prior) >= 0)
  assert float(prior.max()) < 1e-4


def _brute_force_posterior(abar_prev, alpha, x0, x_t):
  """q(x_{t-1} | x_t, x0) by conditioning the joint Gaussian of (x_{t-1}, x_t) given x0."""
  var_prev = 1.0 - abar_prev                   # Var(x_{t-1} | x0)
  mean_prev = math.sqrt(abar_prev) * x0
  cov = math.sqrt(alpha) * var_prev            # Cov(x_{t-1}, x_t | x0)
  var_t = alpha * var_prev + (1.0 - alpha)     # Var(x_t | x0)
  mean_t = math.sqrt(alpha) * mean_prev
  return mean_prev + cov / var_t * (x_t - mean_t), var_prev - cov ** 2 / var_t


@pytest.mark.parametrize("name", schedules.SCHEDULES)
def test_posterior_matches_brute_force_conditioning(name):
  with jax.enable_x64(True):
    s = schedules.make_schedule(name, 50, jnp.float64)
    betas = schedules.betas_for(name, 50)
    abar = np.cumprod(1.0 - betas)
    rng = np.random.default_rng(0)
    for t in [1, 2, 17, 49]:
      x0, x_t = rng.normal(size=2)
      mean, var, log_var = process.q_posterior(s, jnp.array([[x0]]), jnp.array([[x_t]]), jnp.array([t]))
      want_mean, want_var = _brute_force_posterior(abar[t - 1], 1.0 - betas[t], x0, x_t)
      np.testing.assert_allclose(float(mean[0, 0]), want_mean, rtol=1e-10, atol=1e-12)
      np.testing.assert_allclose(float(var[0, 0]), want_var, rtol=1e-10)
      np.testing.assert_allclose(float(log_var[0, 0]), math.log(want_var), rtol=1e-10)
    # t index 0 (paper step 1): x_{t-1} = x_0 exactly.
    mean, var, _ = process.q_posterior(s, jnp.array([[0.3]]), jnp.array([[-1.2]]), jnp.array([0]))
    np.testing.assert_allclose(float(mean[0, 0]), 0.3, rtol=1e-12)
    assert float(var[0, 0]) == 0.0


def test_x0_eps_round_trip_and_reverse_mean_forms():
  with jax.enable_x64(True):
    s = schedules.make_schedule("cosine", 100, jnp.float64)
    key = jax.random.PRNGKey(0)
    x0 = jax.random.uniform(key, (5, 4, 4, 1), jnp.float64, -1, 1)
    eps = jax.random.normal(jax.random.fold_in(key, 1), x0.shape, jnp.float64)
    t = jnp.array([0, 1, 30, 98, 99])

    @jax.jit
    def forms(x0, eps):
      x_t = process.q_sample(s, x0, t, eps)
      mean, x0_hat = process.reverse_mean(s, x_t, t, eps)
      return (process.predict_x0_from_eps(s, x_t, t, eps), process.predict_eps_from_x0(s, x_t, t, x0),
              x0_hat, mean, process.reverse_mean_from_eps(s, x_t, t, eps), process.q_posterior(s, x0, x_t, t)[0])

    x0_back, eps_back, x0_hat, mean, mean_eps, mean_posterior = forms(x0, eps)
    np.testing.assert_allclose(x0_back, x0, atol=1e-9)
    np.testing.assert_allclose(eps_back, eps, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(x0_hat, x0, atol=1e-9)
    np.testing.assert_allclose(mean, mean_eps, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mean, mean_posterior, atol=1e-9)


def test_unknown_names_fail_clearly():
  with pytest.raises(ValueError, match="schedule"):
    schedules.make_schedule("quadratic", 10)
  with pytest.raises(ValueError, match="variance"):
    schedules.model_log_variance(schedules.make_schedule("linear", 10), "hybrid")
  with pytest.raises(ValueError, match="T >= 2"):
    schedules.make_schedule("linear", 1)
