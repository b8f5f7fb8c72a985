"""The variational bound against independent computations (float64, analytic denoisers)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.diffusion import bound, schedules
from genfam.likelihood.bits import nats_to_bpd

T = 40


def _phi(z):
  return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _oracle_eps_fn(s, x0_star):
  """The optimal eps for a data set holding the one image x0_star (broadcast over the batch)."""
  def eps_fn(x_t, t):
    a = s.sqrt_alpha_bars[t].reshape(-1, *([1] * (x_t.ndim - 1)))
    b = s.sqrt_one_minus_alpha_bars[t].reshape(a.shape)
    return (x_t - a * x0_star) / b
  return eps_fn


@pytest.mark.parametrize("name,num_bins", [("linear", 256), ("cosine", 17)])
def test_oracle_one_image_bound_is_prior_plus_decoder(name, num_bins):
  with jax.enable_x64(True):
    s = schedules.make_schedule(name, T, jnp.float64)
    log_var = schedules.model_log_variance(s, "posterior")
    rng = np.random.default_rng(1)
    x_int = rng.integers(0, num_bins, size=(1, 3, 3, 2))
    x_int[0, 0, 0, 0], x_int[0, 0, 0, 1] = 0, num_bins - 1      # both open edge bins present
    x_int = jnp.asarray(np.repeat(x_int, 2, axis=0))             # the one image, twice
    x0_star = x_int[:1].astype(jnp.float64) * 2.0 / (num_bins - 1) - 1.0
    parts = jax.jit(lambda x: bound.exact_vlb(_oracle_eps_fn(s, x0_star), s, log_var, x, jax.random.PRNGKey(0),
                                              num_bins, chunk=7, dtype=jnp.float64))(x_int)
    assert parts["terms"].shape == (T, 2) and parts["prior"].shape == (2,)
    np.testing.assert_allclose(parts["terms"][1:], 0.0, atol=1e-9)   # every L_t, t >= 2

    # Independent: prior KL per pixel from alpha-bar_T = prod(1 - beta).
    betas = schedules.betas_for(name, T)
    abar = np.cumprod(1.0 - betas)
    x0 = np.asarray(x0_star[0]).ravel()
    want_prior = np.sum(0.5 * (-math.log(1 - abar[-1]) + (1 - abar[-1]) + abar[-1] * x0 ** 2 - 1.0))
    np.testing.assert_allclose(parts["prior"], want_prior, rtol=1e-8)

    # Independent: L_0 = -log P(bin | N(x0*, sigma_1^2)), sigma_1^2 = beta-tilde_2, open edges.
    sigma = math.sqrt(betas[1] * (1 - abar[0]) / (1 - abar[1]))
    half = 1.0 / (num_bins - 1)
    probs = [(_phi(half / sigma) if k in (0, num_bins - 1) else 2 * _phi(half / sigma) - 1)
             for k in np.asarray(x_int[0]).ravel()]
    want_l0 = -np.sum(np.log(probs))
    np.testing.assert_allclose(parts["terms"][0], want_l0, rtol=1e-6)

    total_bpd = nats_to_bpd(parts["prior"] + parts["terms"].sum(0), x0.size)
    np.testing.assert_allclose(total_bpd, (want_prior + want_l0) / (x0.size * math.log(2)), rtol=1e-6)


def _gaussian_case(variance):
  """1-D data x0 ~ N(m, s^2), analytic optimal eps, and closed-form L_t pieces."""
  m, sd = 0.3, 0.5
  sched = schedules.make_schedule("linear", T, jnp.float64)
  betas = schedules.betas_for("linear", T)
  abar = np.cumprod(1.0 - betas)

  def eps_fn(x_t, t):  # E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) m) / (a s^2 + 1 - a)
    a = sched.alpha_bars[t][:, None]
    return jnp.sqrt(1 - a) * (x_t - jnp.sqrt(a) * m) / (a * sd ** 2 + 1 - a)

  def closed_form(t, x0, x_t):
    """KL(q(x_{t-1}|x_t,x0) || N(E[x_{t-1}|x_t], sigma^2)) by joint-Gaussian conditioning."""
    a_prev, alpha = abar[t - 1], 1.0 - betas[t]
    v_prev = a_prev * sd ** 2 + 1 - a_prev                      # Var(x_{t-1})
    mu_p = math.sqrt(a_prev) * m + math.sqrt(alpha) * v_prev / (alpha * v_prev + betas[t]) * (
        x_t - math.sqrt(abar[t]) * m)                           # E[x_{t-1} | x_t]
    var_c = 1 - a_prev                                          # given x0:
    mu_q = math.sqrt(a_prev) * x0 + math.sqrt(alpha) * var_c / (alpha * var_c + betas[t]) * (
        x_t - math.sqrt(abar[t]) * x0)
    var_q = var_c - alpha * var_c ** 2 / (alpha * var_c + betas[t])
    var_p = var_q if variance == "posterior" else betas[t]
    return 0.5 * (math.log(var_p / var_q) + var_q / var_p + (mu_q - mu_p) ** 2 / var_p - 1.0)

  return sched, eps_fn, closed_form, (m, sd, abar, betas)


@pytest.mark.parametrize("variance", schedules.FIXED_VARIANCES)
def test_gaussian_data_terms_match_closed_form_kl(variance):
  with jax.enable_x64(True):
    sched, eps_fn, closed_form, (m, sd, abar, betas) = _gaussian_case(variance)
    log_var = schedules.model_log_variance(sched, variance)
    key = jax.random.PRNGKey(3)
    term = jax.jit(lambda x0, t, noise: bound.vlb_term(
        eps_fn, sched, log_var, jnp.zeros(x0.shape, jnp.int32), x0, t, noise, 256))
    n = 4
    x0 = m + sd * jax.random.normal(key, (n, 1), jnp.float64)
    for t in [1, 2, 10, T - 1]:
      noise = jax.random.normal(jax.random.fold_in(key, t), (n, 1), jnp.float64)
      got = term(x0, jnp.full((n,), t), noise)
      x_t = np.sqrt(abar[t]) * np.asarray(x0) + np.sqrt(1 - abar[t]) * np.asarray(noise)
      want = [closed_form(t, float(x0[i, 0]), float(x_t[i, 0])) for i in range(n)]
      np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12)

    # Expectation over data and noise: 0.5 (log(s2/b) + b/s2 - 1) + c1^2 Var(x0 | x_t) / (2 s2).
    t, n = 5, 20000
    x0 = m + sd * jax.random.normal(jax.random.fold_in(key, 99), (n, 1), jnp.float64)
    noise = jax.random.normal(jax.random.fold_in(key, 98), (n, 1), jnp.float64)
    got = term(x0, jnp.full((n,), t), noise)
    b = betas[t] * (1 - abar[t - 1]) / (1 - abar[t])
    s2 = b if variance == "posterior" else betas[t]
    c1 = betas[t] * math.sqrt(abar[t - 1]) / (1 - abar[t])
    var_x0 = sd ** 2 * (1 - abar[t]) / (abar[t] * sd ** 2 + 1 - abar[t])
    want = 0.5 * (math.log(s2 / b) + b / s2 - 1) + c1 ** 2 * var_x0 / (2 * s2)
    assert float(jnp.mean(got)) == pytest.approx(want, rel=0.03)


def test_sampled_estimate_is_unbiased():
  """E[L_0 + (T-1) L_{t~U{1..T-1}}] = sum_t L_t: the mean over many draws matches the exact sum."""
  s = schedules.make_schedule("cosine", 12)
  log_var = schedules.model_log_variance(s, "beta")
  eps_fn = lambda x, t: 0.5 * jnp.tanh(x)   # a poor but fixed denoiser: L_t far from zero
  n = 1000
  x_int = jnp.tile(jnp.arange(8, dtype=jnp.int32).reshape(1, 8) * 2, (n, 1))  # one image, many copies
  exact = jax.jit(lambda x: bound.exact_vlb(eps_fn, s, log_var, x, jax.random.PRNGKey(0), 17, chunk=4))(x_int)
  est = jax.jit(lambda x: bound.sampled_vlb(eps_fn, s, log_var, x, jax.random.PRNGKey(1), 17,
                                            num_t=3, chunk=3))(x_int)
  np.testing.assert_allclose(est["prior"], exact["prior"], rtol=1e-6)
  exact_sum = float(exact["terms"].sum(0).mean())
  assert est["terms"].shape == (n,)
  stderr = float(est["terms"].std() / math.sqrt(n))
  assert abs(float(est["terms"].mean()) - exact_sum) < 4 * stderr + 1e-3 * exact_sum


@pytest.mark.parametrize("clip_x0", [False, True])
def test_exact_bound_does_not_depend_on_the_chunk_size(clip_x0):
  """Term t always uses noise fold_in(rng, t): chunk 1, a chunk that does not divide T
  (padded rows dropped), chunk = T and chunk > T give the same [T, B] terms."""
  s = schedules.make_schedule("linear", 12)
  log_var = schedules.model_log_variance(s, "beta")
  rng = np.random.default_rng(4)
  w = jnp.asarray(rng.normal(size=(18, 18)) / np.sqrt(18), jnp.float32)   # a fixed random linear map
  v = jnp.asarray(rng.normal(size=(18,)), jnp.float32)

  def eps_fn(x_t, t):  # x_t [B, 3, 3, 2], t [B] -> eps = W x_t + (t / T) v
    flat = x_t.reshape(x_t.shape[0], -1) @ w + (t.astype(jnp.float32) / s.num_steps)[:, None] * v
    return flat.reshape(x_t.shape)

  x_int = jnp.asarray(rng.integers(0, 17, size=(3, 3, 3, 2)), jnp.int32)
  run = lambda chunk: jax.jit(lambda x: bound.exact_vlb(eps_fn, s, log_var, x, jax.random.PRNGKey(5), 17,
                                                        chunk=chunk, clip_x0=clip_x0))(x_int)
  want = run(s.num_steps)
  assert want["terms"].shape == (s.num_steps, 3) and bool(jnp.all(want["terms"][:6] > 1e-2))  # not trivial
  for chunk in (1, 7, 50):
    got = run(chunk)
    np.testing.assert_allclose(got["terms"], want["terms"], rtol=1e-5, atol=1e-6, err_msg=f"chunk={chunk}")
    np.testing.assert_allclose(got["prior"], want["prior"], rtol=1e-6)
    np.testing.assert_allclose(got["terms"].sum(0), want["terms"].sum(0), rtol=1e-5)
