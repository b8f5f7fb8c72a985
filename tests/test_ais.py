"""Annealed importance sampling (`genfam.likelihood.ais`) against known answers.

1. A linear-Gaussian decoder, p(z) = N(0, I_L), p(y|z) = N(W z + c, s^2 I_D),
   whose marginal p(y) = N(c, W W^T + s^2 I) is known in closed form: the
   forward AIS estimate matches log p(y) within a tight tolerance and its error
   shrinks as the number of intermediate distributions T grows.
2. Bidirectional Monte Carlo on data simulated from a small nonlinear model
   (y = tanh(W z) + b + noise, L = 2; the z that made y is an exact posterior
   sample): the forward estimate is below log p(y) and the reverse one above
   it on average, with a gap that shrinks as T grows; the truth comes from
   quadrature on a grid.
3. The VAE's own discrete decoder (a smoke VAE trained briefly on digits): AIS
   on log p(x|z) gives log p(x) at least as high as the VAE's IWAE-8 bound on
   the same images, and agrees with its IWAE-256.
All in float64 where the tolerances are tight.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.likelihood import ais


def test_sigmoid_schedule():
  betas = ais.sigmoid_schedule(100)
  assert betas.shape == (101,) and betas[0] == 0.0 and betas[-1] == 1.0
  assert np.all(np.diff(betas) > 0)
  # sigmoid: small steps at both ends, large in the middle
  assert np.diff(betas)[0] < np.diff(betas)[50] > np.diff(betas)[-1]


def _linear_gaussian():
  rng = np.random.default_rng(0)
  d, l, b, sigma = 8, 3, 16, 0.5
  w, c = 0.5 * rng.normal(size=(d, l)), rng.normal(size=d)
  y = rng.normal(size=(b, l)) @ w.T + c + sigma * rng.normal(size=(b, d))
  cov = w @ w.T + sigma ** 2 * np.eye(d)
  diff = y - c
  _, logdet = np.linalg.slogdet(cov)
  log_py = -0.5 * (np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff) + logdet + d * math.log(2 * math.pi))
  return w, c, sigma, y, log_py


def test_linear_gaussian_matches_closed_form_and_improves_with_steps():
  """16 chains per example; T = 10 is far off (below, on average), T = 1000 within 0.08 nats."""
  w, c, sigma, y, log_py = _linear_gaussian()
  with jax.enable_x64(True):
    wj, cj = jnp.asarray(w), jnp.asarray(c)
    ll = lambda z, yi: ais.gaussian_log_likelihood(wj @ z + cj, yi, sigma ** 2)
    errors = {}
    for steps in (10, 1000):
      run = jax.jit(lambda key: ais.forward_ais(ll, jnp.asarray(y), 3, key, num_steps=steps, num_chains=16,
                                                step_size=0.3, dtype=jnp.float64))
      out = run(jax.random.key(steps))
      assert out.log_estimate.dtype == jnp.float64 and out.log_weights.shape == (16, 16)
      errors[steps] = np.asarray(out.log_estimate) - log_py
  mean_abs = {k: float(np.mean(np.abs(v))) for k, v in errors.items()}
  print("linear-Gaussian mean |AIS - log p(y)| (nats) by T:", mean_abs,
        "mean error at T=1000:", float(np.mean(errors[1000])))
  assert mean_abs[10] > 4 * mean_abs[1000], mean_abs
  assert mean_abs[1000] < 0.08 and float(np.max(np.abs(errors[1000]))) < 0.3, errors[1000]
  assert abs(float(np.mean(errors[1000]))) < 0.04, errors[1000]
  assert float(np.mean(errors[10])) < 0.0   # a stochastic lower bound: short runs fall below


def _nonlinear_model():
  """y = tanh(W z) + b + s eps with L = 2, simulated with its z (exact posterior samples)."""
  rng = np.random.default_rng(1)
  d, l, n, sigma = 8, 2, 32, 0.3
  w, b = rng.normal(size=(d, l)), 0.3 * rng.normal(size=d)
  z = rng.normal(size=(n, l))
  y = np.tanh(z @ w.T) + b + sigma * rng.normal(size=(n, d))
  return w, b, sigma, z, y


def test_bdmc_brackets_the_truth_and_the_gap_shrinks():
  """Forward AIS from the prior <= log p(y) <= reverse AIS from the simulating z, on average
  (within 2 standard errors over 32 examples), checked against quadrature on a
  601^2 grid; the gap shrinks from T = 10 to T = 1000. One compiled function
  runs both directions (schedule and starting points are arguments)."""
  w, b, sigma, z, y = _nonlinear_model()
  n, chains = len(y), 4
  with jax.enable_x64(True):
    wj, bj, yj = jnp.asarray(w), jnp.asarray(b), jnp.asarray(y)
    ll = lambda zz, yi: ais.gaussian_log_likelihood(jnp.tanh(wj @ zz) + bj, yi, sigma ** 2)
    grid = jnp.linspace(-6.0, 6.0, 601)
    zz = jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)            # [G, 2]
    log_joint = jax.vmap(lambda yi: jax.vmap(ll, (0, None))(zz, yi))(yj) + ais.standard_normal_log_prob(zz)
    truth = np.asarray(jax.nn.logsumexp(log_joint, axis=1) + 2 * math.log(float(grid[1] - grid[0])))

    @jax.jit
    def run(key, betas, init_z):
      return ais.ais(ll, yj, 2, key, betas=betas, init_z=init_z, num_chains=chains, step_size=0.2,
                     dtype=jnp.float64).log_estimate

    gaps, bounds = {}, {}
    for steps in (10, 1000):
      betas = ais.sigmoid_schedule(steps)
      prior_z = jax.random.normal(jax.random.key(steps), (n, chains + 1, 2), jnp.float64)
      lower = np.asarray(run(jax.random.key(0), betas, prior_z)) - truth
      upper = -np.asarray(run(jax.random.key(1), betas[::-1].copy(),
                              jnp.broadcast_to(jnp.asarray(z)[:, None], (n, chains + 1, 2)))) - truth
      se = lambda v: float(np.std(v) / math.sqrt(n))
      bounds[steps] = (float(np.mean(lower)), se(lower), float(np.mean(upper)), se(upper))
      gaps[steps] = float(np.mean(upper - lower))
  print("BDMC (lower - truth, se, upper - truth, se) by T:", bounds, "gap (nats):", gaps)
  for steps, (low, low_se, up, up_se) in bounds.items():
    assert low < 2 * low_se and up > -2 * up_se, (steps, bounds[steps])
  assert gaps[10] > 5 * gaps[1000] > 0, gaps
  assert gaps[1000] < 0.15, gaps


def test_no_annealing_gives_unit_weights():
  """beta held at 1 (no change between intermediate densities): every log weight is exactly 0."""
  with jax.enable_x64(True):
    ll = lambda z, yi: -0.5 * jnp.sum((z - yi) ** 2)
    out = ais.ais(ll, jnp.zeros((3, 2)), 2, jax.random.key(0), betas=np.ones(5), num_chains=2,
                  init_z=jnp.zeros((3, 2)), dtype=jnp.float64)
    np.testing.assert_allclose(out.log_weights, 0.0, atol=1e-12)


@pytest.fixture(scope="module")
def trained_vae():
  """A smoke VAE (configs/vae.py:smoke, latent 4) trained 100 steps on scikit-learn's digits."""
  from sklearn.datasets import load_digits

  from genfam.data import sources
  from genfam.families import vae
  from tests.conftest import load_config
  config = load_config("vae")
  config.optim.warmup_steps = 10
  spec = sources.dataset_spec("digits")
  images = load_digits().images.astype(np.uint8)[..., None]                     # [1797, 8, 8, 1] in 0..16
  family = vae.make(config, spec)
  state = family.init(jax.random.key(0), {"image": images[:16]})
  update = jax.jit(family.update)
  rng = np.random.default_rng(0)
  for step in range(100):
    batch = {"image": images[rng.integers(0, 1500, 64)]}
    state, _ = update(state, batch, jax.random.key(step))
  return config, spec, family, family.eval_params(state), images[1500:1508]


def test_ais_on_the_vae_decoder_is_at_least_its_iwae_bound(trained_vae):
  """AIS (T = 100, 4 chains) on the VAE's discrete decoder log p(x|z) >= IWAE-8 on the same 8
  images, and within 0.015 bits/dim of IWAE-256 (both estimate the same log p(x), the IWAE
  bound from below; a tight IWAE here: latent 4, a good encoder)."""
  from genfam.families import vae
  from genfam.likelihood.bits import nats_to_bpd
  config, spec, family, params, images = trained_vae
  model, pixels = vae.build(config, spec)
  x = jnp.asarray(images, jnp.int32)                                            # [B, 8, 8, 1]

  def log_px_z(z, xi):  # z [L], xi [8, 8, 1] -> log p(x | z), the decoder's discrete likelihood
    out = model.apply({"params": params}, z[None], None, method=vae.VAE.decode)
    return pixels.log_prob(xi[None], out)[0]

  run = jax.jit(lambda key: ais.forward_ais(log_px_z, x, model.latent_dim, key, num_steps=100, num_chains=4,
                                            step_size=0.1).log_estimate)
  ais_bpd = np.asarray(nats_to_bpd(-run(jax.random.key(0)), spec.num_dims))          # [B]
  iwae = {}
  for k in (8, 256):
    fn = jax.jit(vae.iwae_fn(model, pixels, spec.num_dims, num_samples=k, chunk_size=64))
    iwae[k] = float(np.mean(fn(params, {"image": images}, jax.random.key(k))["bpd"]))
  print(f"VAE on digits, 8 images: AIS-100 {ais_bpd.mean():.4f} bits/dim, IWAE {iwae}")
  assert np.all(np.isfinite(ais_bpd))
  assert ais_bpd.mean() <= iwae[8], (ais_bpd.mean(), iwae)
  assert abs(ais_bpd.mean() - iwae[256]) < 0.015, (ais_bpd.mean(), iwae)
