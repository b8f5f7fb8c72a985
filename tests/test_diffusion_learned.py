"""Learned variances and the hybrid loss (Nichol & Dhariwal): v = 1 / v = 0 are exactly the fixed
'beta' / 'posterior' bound and samplers; the hybrid loss's L_vlb term gives no gradient to the mean;
importance-sampled t keeps the objective's expectation and its history behaves as specified."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from genfam.diffusion import bound, losses, process, samplers, schedules

T = 12
NUM_BINS = 17


def _linear_eps_fn(seed=0, dtype=jnp.float32):
  """A fixed random linear map eps = W x_t + (t / T) b on [B, 3, 3, 2] images."""
  rng = np.random.default_rng(seed)
  w = jnp.asarray(rng.normal(size=(18, 18)) / np.sqrt(18), dtype)
  b = jnp.asarray(rng.normal(size=(18,)), dtype)

  def eps_fn(x_t, t):
    flat = x_t.reshape(x_t.shape[0], -1) @ w + (t.astype(dtype) / T)[:, None] * b
    return flat.reshape(x_t.shape)

  return eps_fn


def _with_v(eps_fn, value):
  return lambda x, t: (eps_fn(x, t), jnp.full(x.shape, value, x.dtype))


def _images(n=3, seed=1):
  return jnp.asarray(np.random.default_rng(seed).integers(0, NUM_BINS, size=(n, 3, 3, 2)), jnp.int32)


class FixedEndpointsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(("beta", 1.0), ("posterior", 0.0))
  def test_v_at_an_endpoint_is_the_fixed_variance_bound(self, variance, v):
    with jax.enable_x64(True):
      s = schedules.make_schedule("cosine", T, jnp.float64)
      eps_fn = _linear_eps_fn(dtype=jnp.float64)
      x = _images()
      key = jax.random.PRNGKey(2)
      fixed = self.variant(lambda x: bound.exact_vlb(eps_fn, s, schedules.model_log_variance(s, variance), x,
                                                     key, NUM_BINS, chunk=5, dtype=jnp.float64))(x)
      learned = self.variant(lambda x: bound.exact_vlb(_with_v(eps_fn, v), s, schedules.model_log_variance(
          s, "learned"), x, key, NUM_BINS, chunk=5, dtype=jnp.float64))(x)
      assert learned["terms"].dtype == jnp.float64 and bool(jnp.all(fixed["terms"][1:] > 1e-3))
      np.testing.assert_array_equal(learned["prior"], fixed["prior"])
      np.testing.assert_allclose(learned["terms"], fixed["terms"], rtol=1e-13, atol=1e-13)   # every part
      sampled_kw = dict(num_t=4, chunk=5, dtype=jnp.float64)
      est_fixed = bound.sampled_vlb(eps_fn, s, schedules.model_log_variance(s, variance), x, key, NUM_BINS,
                                    **sampled_kw)
      est_learned = bound.sampled_vlb(_with_v(eps_fn, v), s, schedules.model_log_variance(s, "learned"), x, key,
                                      NUM_BINS, **sampled_kw)
      np.testing.assert_allclose(est_learned["terms"], est_fixed["terms"], rtol=1e-13)

  @chex.variants(with_jit=True, without_jit=True)
  def test_samplers_at_the_endpoints(self):
    s = schedules.make_schedule("linear", T)
    eps_fn = _linear_eps_fn()
    learned = schedules.model_log_variance(s, "learned")
    rng, shape = jax.random.PRNGKey(3), (2, 3, 3, 2)
    for variance, v in (("beta", 1.0), ("posterior", 0.0)):
      want = self.variant(lambda r: samplers.ddpm_sample(eps_fn, s, schedules.model_log_variance(s, variance),
                                                         r, shape))(rng)
      got = self.variant(lambda r: samplers.ddpm_sample(_with_v(eps_fn, v), s, learned, r, shape))(rng)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    ts = samplers.ddim_timesteps(T, 4, "trailing")
    want = self.variant(lambda r: samplers.ddim_sample(eps_fn, s, ts, r, shape, eta=0.7))(rng)   # Song et al.
    got = self.variant(lambda r: samplers.ddim_sample(_with_v(eps_fn, 0.0), s, ts, r, shape, eta=0.7,
                                                      log_variance=learned))(rng)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    wider = samplers.ddim_sample(_with_v(eps_fn, 1.0), s, ts, rng, shape, eta=0.7, log_variance=learned)
    assert bool(jnp.all(jnp.isfinite(wider))) and not np.allclose(wider, want)   # v is used


def test_learned_log_variance_interpolates_in_log_space():
  s = schedules.make_schedule("linear", T)
  learned = schedules.model_log_variance(s, "learned")
  t = jnp.array([0, 3, T - 1])
  v = jnp.array([0.25, 0.5, 0.9]).reshape(3, 1)
  got = process.log_variance_at(learned, t, 2, v)
  want = v[:, 0] * s.beta_log_variance[t] + (1 - v[:, 0]) * s.posterior_log_variance[t]
  np.testing.assert_allclose(got[:, 0], want, rtol=1e-6)
  np.testing.assert_allclose(got[0, 0], s.posterior_log_variance[0], rtol=1e-6)   # decoder: both endpoints equal


def _tiny_model(params, x_t, t):
  """eps = a x_t (the mean's parameter a), v = sigmoid(b) (the variance's parameter b)."""
  return params["a"] * x_t, jnp.full(x_t.shape, jax.nn.sigmoid(params["b"]))


def _objective_parts(kind, params, t):
  s = schedules.make_schedule("cosine", T)
  x_int = _images(4)
  x0 = x_int.astype(jnp.float32) * 2 / (NUM_BINS - 1) - 1
  noise = jax.random.normal(jax.random.PRNGKey(5), x0.shape)
  x_t = process.q_sample(s, x0, t, noise)
  out = _tiny_model(params, x_t, t)
  loss, l_t = losses.objective(kind, s, schedules.model_log_variance(s, "learned"), x_int, x0, x_t, t, noise, out,
                               NUM_BINS, 1e-3)
  return loss, l_t, losses.mse_per_example(out[0], noise)


class HybridGradientTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_vlb_term_trains_only_the_variance(self):
    params = {"a": jnp.float32(0.3), "b": jnp.float32(0.2)}
    t = jnp.array([0, 1, 5, T - 1])
    vlb_part = lambda p: jnp.sum(_objective_parts("hybrid", p, t)[1])   # L_t as the hybrid loss computes it
    grads = self.variant(jax.grad(vlb_part))(params)
    assert float(grads["a"]) == 0.0                                   # stop-gradient on the mean
    assert abs(float(grads["b"])) > 1e-6                              # the variance is trained
    hybrid = self.variant(jax.grad(lambda p: jnp.sum(_objective_parts("hybrid", p, t)[0])))(params)
    simple = self.variant(jax.grad(lambda p: jnp.sum(_objective_parts("hybrid", p, t)[2])))(params)
    np.testing.assert_allclose(hybrid["a"], simple["a"], rtol=1e-6)   # the mean: L_simple's gradient only
    vlb = self.variant(jax.grad(lambda p: jnp.sum(_objective_parts("vlb", p, t)[0])))(params)
    assert abs(float(vlb["a"])) > 1e-6                                # the plain bound does train the mean

  def test_hybrid_is_simple_plus_lambda_t_l_t_in_bits_per_dim(self):
    params = {"a": jnp.float32(0.3), "b": jnp.float32(0.2)}
    t = jnp.array([0, 1, 5, T - 1])
    loss, l_t, mse = _objective_parts("hybrid", params, t)
    np.testing.assert_allclose(loss, mse + 1e-3 * T * l_t, rtol=1e-6)
    s = schedules.make_schedule("cosine", T)
    x_int = _images(4)
    x0 = x_int.astype(jnp.float32) * 2 / (NUM_BINS - 1) - 1
    noise = jax.random.normal(jax.random.PRNGKey(5), x0.shape)
    nats = bound.vlb_term(lambda x, tt: _tiny_model(params, x, tt), s, schedules.model_log_variance(s, "learned"),
                          x_int, x0, t, noise, NUM_BINS)
    np.testing.assert_allclose(l_t, nats / (18 * np.log(2)), rtol=1e-5)


def test_importance_history_and_unbiased_weights():
  hist = losses.init_history(4, history=2)
  np.testing.assert_allclose(losses.t_probabilities(hist), 0.25)          # uniform until full
  hist = jax.jit(losses.update_history)(hist, jnp.array([1, 1, 1, 0, 0, 2, 3, 3]),
                                        jnp.array([1., 2., 3., 4., 5., 6., 7., 8.]))
  np.testing.assert_array_equal(hist["values"], [[4, 5], [2, 3], [6, 0], [7, 8]])   # oldest of t=1 dropped
  np.testing.assert_array_equal(hist["counts"], [2, 2, 1, 2])
  np.testing.assert_allclose(losses.t_probabilities(hist), 0.25)          # t = 2 not full yet
  hist = losses.update_history(hist, jnp.array([2]), jnp.array([6.]))
  probs = losses.t_probabilities(hist, uniform_prob=0.0)
  rms = np.sqrt([(16 + 25) / 2, (4 + 9) / 2, 36, (49 + 64) / 2])
  np.testing.assert_allclose(probs, rms / rms.sum(), rtol=1e-6)
  t, w = losses.sample_t(jax.random.PRNGKey(0), probs, 20000)
  l_t = jnp.array([1.0, 2.0, 3.0, 4.0])
  np.testing.assert_allclose(w, 1.0 / (4 * probs[t]), rtol=1e-6)
  np.testing.assert_allclose(jnp.mean(w * l_t[t]), jnp.mean(l_t), rtol=0.02)   # E_p[w L_t] = mean_t L_t
  exact = jnp.sum(probs * (1.0 / (4 * probs)) * l_t)
  np.testing.assert_allclose(exact, jnp.mean(l_t), rtol=1e-6)
