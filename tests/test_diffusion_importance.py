"""The importance-sampled estimate of DDPM's full bound (`genfam.diffusion.importance`):
its sampler's laws by enumeration, unbiasedness by enumeration (float64, exact), its variance
and the evaluation's standard error against brute-force Monte Carlo, and the family's
'vlb-is-<k>t' against the full bound on the same images (a statistical test that can fail)."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data.spec import DatasetSpec
from genfam.diffusion import bound, importance, schedules
from genfam.errors import GenfamError
from genfam.evaluation import evaluate
from genfam.families import diffusion as family_module
from genfam.likelihood.bits import nats_to_bpd
from genfam.loop import frozen
from tests.conftest import load_config

T = 9          # schedule indices 0 .. 8: L_0 exact, 1 .. 8 sampled
NUM_BINS = 17


def _wrong_image_eps_fn(s, target):
  """eps whose x_0-hat is exactly `target(t)` [B, ...] whatever x_t: every L_t is then a function of
  x_0 alone (no noise in it), so sums over t are exact known answers."""
  def eps_fn(x_t, t):
    a = s.sqrt_alpha_bars[t].reshape(-1, *([1] * (x_t.ndim - 1)))
    b = s.sqrt_one_minus_alpha_bars[t].reshape(a.shape)
    return (x_t - a * target(t, x_t.shape)) / b
  return eps_fn


def _target(t, shape):
  """A fixed image pattern that drifts with t (so L_t differs across t and is not 0)."""
  base = jnp.linspace(-0.8, 0.8, math.prod(shape[1:])).reshape(shape[1:]).astype(jnp.float64)
  scale = (0.3 + t.astype(jnp.float64) / T).reshape(-1, *([1] * (len(shape) - 1)))
  return jnp.broadcast_to(scale * base[None], shape)


def _images(n, seed=0, shape=(2, 2, 1)):
  return jnp.asarray(np.random.default_rng(seed).integers(0, NUM_BINS, (n,) + shape), jnp.int32)


def _exact_terms(s, log_var, x_int):
  parts = bound.exact_vlb(_wrong_image_eps_fn(s, _target), s, log_var, x_int, jax.random.PRNGKey(0), NUM_BINS,
                          chunk=4, dtype=jnp.float64)
  return np.asarray(parts["prior"]), np.asarray(parts["terms"])        # [B], [T, B]


def _skewed_proposal(num_steps, dtype=jnp.float64):
  """A proposal unlike the terms (so the variance is not near 0)."""
  p = jnp.concatenate([jnp.zeros((1,), dtype), jnp.linspace(1.0, 3.0, num_steps - 1).astype(dtype)])
  return p / jnp.sum(p)


def test_pilot_grid_covers_both_ends_and_all_t_when_asked():
  grid = importance.pilot_grid(1000, 64)
  assert grid[0] == 1 and grid[-1] == 999 and len(grid) <= 64 and np.all(np.diff(grid) > 0)
  assert np.sum(grid <= 10) >= 8              # the geometric half: dense at small t
  np.testing.assert_array_equal(importance.pilot_grid(12, 0), np.arange(1, 12))
  np.testing.assert_array_equal(importance.pilot_grid(12, 50), np.arange(1, 12))


def test_proposal_follows_the_pilot_rms_with_a_uniform_floor():
  with jax.enable_x64(True):
    grid = np.arange(1, T)
    rng = np.random.default_rng(2)
    terms = rng.gamma(2.0, 1.0, (T - 1, 5)) * np.linspace(4, 1, T - 1)[:, None]
    u = 0.2
    q = np.asarray(importance.proposal(grid, jnp.asarray(terms), T, u))
    rms = np.sqrt(np.mean(terms ** 2, axis=1))
    np.testing.assert_allclose(q, np.concatenate([[0.0], (1 - u) * rms / rms.sum() + u / (T - 1)]), rtol=1e-12)
    assert q[0] == 0.0 and math.isclose(q.sum(), 1.0, rel_tol=1e-12)
    # A coarse grid: through the grid points' RMS (log-linear in between); weights bounded by (T - 1) / u.
    coarse = np.array([1, 4, 8])
    qc = np.asarray(importance.proposal(coarse, jnp.asarray(terms[coarse - 1]), T, u))
    r = (qc[1:] - u / (T - 1)) / (1 - u)                                  # r[i]: t = i + 1
    rms_c = np.sqrt(np.mean(terms[coarse - 1] ** 2, axis=1))
    np.testing.assert_allclose(r[coarse - 1] / r[0], rms_c / rms_c[0], rtol=1e-12)
    np.testing.assert_allclose(np.log(r[1]), np.log(r[0]) + (np.log(r[3]) - np.log(r[0])) / 3, rtol=1e-12)
    assert qc.min(initial=1.0, where=np.arange(T) > 0) >= u / (T - 1) * (1 - 1e-12)
    # A pilot of zeros (a perfect model) gives the uniform proposal.
    np.testing.assert_allclose(importance.proposal(coarse, jnp.zeros((3, 2)), T, u)[1:], 1 / (T - 1), rtol=1e-9)
    with pytest.raises(ValueError, match="uniform_share"):
      importance.proposal(coarse, jnp.asarray(terms[coarse - 1]), T, 0.0)


@pytest.mark.parametrize("num_t", [1, 3, 7])
def test_stratum_laws_mix_to_the_proposal_and_match_the_draws(num_t):
  with jax.enable_x64(True):
    q = _skewed_proposal(T)
    q_eff = importance.sampler_probabilities(q, num_t)
    np.testing.assert_allclose(q_eff, np.asarray(q), atol=1e-8)           # the integer CDF's rounding only
    p = importance.stratum_probabilities(q, num_t)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(p.mean(axis=0), q_eff, rtol=1e-13, atol=1e-16)  # (1/k) sum_j P_j = q_eff
    assert np.all(p[:, 0] == 0.0)
    n = 40000
    for stratified, law in ((True, p), (False, np.broadcast_to(q_eff, p.shape))):
      t, prob = importance.draw_timesteps(jax.random.PRNGKey(num_t), q, num_t, n, stratified)
      assert t.shape == prob.shape == (num_t, n) and int(t.min()) >= 1 and int(t.max()) <= T - 1
      np.testing.assert_allclose(prob, q_eff[np.asarray(t)], rtol=1e-12)
      freq = np.stack([np.bincount(np.asarray(row), minlength=T) / n for row in t])
      sd = np.sqrt(law * (1 - law) / n)
      assert np.all(np.abs(freq - law) <= 5 * sd + 1e-12), (stratified, np.max(np.abs(freq - law) / (sd + 1e-12)))


class TestUnbiasedByEnumeration(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_expectation_over_the_sampler_is_the_full_bound(self):
    """E_q[estimate] = sum_t q(t) estimate(t) = prior + L_0 + sum_{t>=1} L_t exactly (float64),
    the estimate at forced t computed by the real code; and the stratified draws' expectation."""
    with jax.enable_x64(True):
      s = schedules.make_schedule("cosine", T, jnp.float64)
      log_var = schedules.model_log_variance(s, "beta")
      x_int = _images(3)
      prior, terms = _exact_terms(s, log_var, x_int)
      full = prior + terms.sum(axis=0)
      assert np.all(terms[1:] > 1e-3)                                   # every term matters
      q = _skewed_proposal(T)
      eps_fn = _wrong_image_eps_fn(s, _target)

      @self.variant
      def at(timesteps, rng):
        return importance.importance_vlb(eps_fn, s, log_var, x_int, rng, NUM_BINS, q=q,
                                         num_t=timesteps.shape[0], timesteps=timesteps, chunk=2, dtype=jnp.float64)

      q_eff = importance.sampler_probabilities(q, 1)
      expectation = np.zeros(3)
      for t in range(1, T):
        got = at(jnp.full((1, 3), t, jnp.int32), jax.random.PRNGKey(t))
        np.testing.assert_allclose(got["prior"], prior, rtol=1e-12)
        np.testing.assert_allclose(got["decoder"], terms[0], rtol=1e-10)
        np.testing.assert_allclose(got["diffusion"], terms[t] / q_eff[t], rtol=1e-10)   # L_t / q(t)
        expectation += q_eff[t] * np.asarray(got["prior"] + got["decoder"] + got["diffusion"])
      np.testing.assert_allclose(expectation, full, rtol=1e-10)

      # Three forced draws: the mean of L / q over the draws, the exact terms once.
      forced = jnp.asarray([[1, 5, 8], [2, 2, 7], [8, 3, 1]], jnp.int32)          # [k, B]
      got = at(forced, jax.random.PRNGKey(9))
      q3 = importance.sampler_probabilities(q, 3)
      want = np.mean(terms[np.asarray(forced), np.arange(3)] / q3[np.asarray(forced)], axis=0)
      np.testing.assert_allclose(got["diffusion"], want, rtol=1e-10)
      np.testing.assert_allclose(got["weighted"].mean(0), got["diffusion"], rtol=1e-12)

      # Stratified draws with k = 3: sum_j sum_t P_j(t) L_t / (k q(t)) = sum_t L_t.
      p = importance.stratum_probabilities(q, 3)
      np.testing.assert_allclose((p @ (terms / np.where(q3 > 0, q3, 1.0)[:, None])).mean(0), terms[1:].sum(0),
                                 rtol=1e-12)


def _one_image_draws(num_t, stratified, n, q, seed=0):
  """S-hat of one image, n independent evaluations (rows), and the exact terms."""
  s = schedules.make_schedule("linear", T, jnp.float64)
  log_var = schedules.model_log_variance(s, "posterior")
  x_int = jnp.tile(_images(1, seed), (n, 1, 1, 1))
  _, terms = _exact_terms(s, log_var, x_int[:1])
  out = jax.jit(lambda x, r: importance.importance_vlb(
      _wrong_image_eps_fn(s, _target), s, log_var, x, r, NUM_BINS, q=q, num_t=num_t, stratified=stratified,
      chunk=4, dtype=jnp.float64))(x_int, jax.random.PRNGKey(seed + 1))
  return out, terms[:, 0]


@pytest.mark.parametrize("stratified", [False, True])
def test_variance_formula_and_per_image_variance_match_monte_carlo(stratified):
  with jax.enable_x64(True):
    q, k, n = _skewed_proposal(T), 3, 6000
    out, terms = _one_image_draws(k, stratified, n, q)
    est = np.asarray(out["diffusion"])
    want_var = importance.estimator_variance(terms, q, k, stratified)
    iid_var = importance.estimator_variance(terms, q, k, False)
    assert want_var > 1e-4 * terms[1:].sum() ** 2 and want_var <= iid_var
    # the sample variance of n draws: relative sd sqrt((kurtosis - 1) / n), < 3% here; tolerance 12%
    assert est.var(ddof=1) == pytest.approx(want_var, rel=0.12)
    assert est.mean() == pytest.approx(terms[1:].sum(), abs=4 * math.sqrt(want_var / n))
    per_image = np.asarray(importance.timestep_variance(out["weighted"], stratified))
    if stratified:   # successive differences: an approximation (k = 3 here: two differences)
      assert 0.5 * want_var <= per_image.mean() <= 3 * want_var
    else:            # unbiased for iid draws
      assert per_image.mean() == pytest.approx(want_var, rel=0.08)


def test_standard_error_over_images_matches_brute_force():
  """R evaluations of N images drawn from a population, each image with its own t draws: the
  evaluation's standard error (std over images / sqrt(N)) matches the spread of the R test
  means, and both match sqrt((Var_x B(x) + E_x Var(B-hat | x)) / N) from enumeration."""
  with jax.enable_x64(True):
    s = schedules.make_schedule("linear", T, jnp.float64)
    log_var = schedules.model_log_variance(s, "posterior")
    population = _images(6, seed=5)
    prior, terms = _exact_terms(s, log_var, population)
    full = prior + terms.sum(0)                                            # B(x) [6]
    q, k = _skewed_proposal(T), 2
    within = np.array([importance.estimator_variance(terms[:, i], q, k, True) for i in range(6)])
    num_images, reps = 10, 1500
    pick = np.random.default_rng(7).integers(0, 6, (reps, num_images))
    out = jax.jit(lambda x, r: importance.importance_vlb(
        _wrong_image_eps_fn(s, _target), s, log_var, x, r, NUM_BINS, q=q, num_t=k, chunk=3,
        dtype=jnp.float64))(population[pick.ravel()], jax.random.PRNGKey(11))
    est = np.asarray(out["prior"] + out["decoder"] + out["diffusion"]).reshape(reps, num_images)
    predicted = math.sqrt((full.var() + within.mean()) / num_images)        # population variance: ddof 0
    assert within.mean() > 0.2 * full.var()                                # the sampling share is not small
    brute = est.mean(axis=1).std(ddof=1)                                   # relative error ~ 1 / sqrt(2R) = 1.8%
    formula = np.array([evaluate.mean_and_stderr(row)[1] for row in est])
    assert brute == pytest.approx(predicted, rel=0.08)
    assert math.sqrt(np.mean(formula ** 2)) == pytest.approx(predicted, rel=0.05)   # E[SE^2] = Var / N
    assert np.mean(est) == pytest.approx(full.mean(), abs=4 * predicted / math.sqrt(reps))


# ------------------------------------------------------------------------------------ the family

SPEC = DatasetSpec("digits", (8, 8, 1), 17, tuple(str(i) for i in range(10)), 1437, 360)


def _config(**eval_options):
  c = load_config("ddpm")   # smoke: T = 20, vlb_chunk = 5, class-conditional, eval.is_timesteps = 0
  c.diffusion.sampled_t = 0
  for key, value in eval_options.items():
    c.eval[key] = value
  return c


def _batch(n, seed):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 17, (n, 8, 8, 1)).astype(np.uint8),
          "label": rng.integers(0, 10, (n,)).astype(np.int32)}


def _random_params(family, seed=1, scale=0.2):
  shapes = jax.eval_shape(lambda: family.eval_params(family.init(jax.random.PRNGKey(0), _batch(2, 0))))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), shapes)


def test_the_loop_hands_the_pilot_to_the_family_only_when_the_bound_needs_it():
  """The family reads no files: genfam.loop.frozen.family_inputs gives it a function that returns
  the pilot images (non-test images) when eval.is_timesteps > 0, and nothing otherwise."""
  assert "pilot" not in frozen.family_inputs(_config(), SPEC)
  inputs = frozen.family_inputs(_config(is_timesteps=4), SPEC)
  assert callable(inputs["pilot"]) and len(inputs["pilot"]()["image"]) == _config().eval.is_pilot_examples


@pytest.mark.parametrize("validation", [0, 20])
def test_pilot_images_are_never_test_images(validation):
  from genfam.data import sources
  c = _config()
  c.data.validation_examples = validation
  loaded = sources.load(c.data)
  pilot = frozen.pilot_batch(c.data, 5)
  split = loaded.sources["validation" if validation else "train"]
  np.testing.assert_array_equal(pilot["image"], np.stack([split[i]["image"] for i in range(5)]))
  np.testing.assert_array_equal(pilot["label"], [split[i]["label"] for i in range(5)])
  test = np.stack([loaded.sources["test"][i]["image"] for i in range(len(loaded.sources["test"]))])
  assert not any(np.any(np.all(test == image[None], axis=(1, 2, 3))) for image in pilot["image"])
  captioned = frozen.pilot_batch(c.data, 3, with_captions=True)     # a caption model's pilot
  assert captioned["caption"].shape == (3, loaded.spec.caption_length) and captioned["caption"][:, 0].all()


def test_config_keys_are_checked_and_the_kind_is_labelled():
  pilot = _batch(4, 9)
  assert family_module.make_family(_config(), SPEC, pilot=pilot).extra_likelihoods is None
  extra = family_module.make_family(_config(is_timesteps=4), SPEC, pilot=pilot)
  assert extra.likelihood_kind == "vlb" and set(extra.extra_likelihoods) == {"vlb-is-4t"}
  main = family_module.make_family(_config(is_timesteps=4, is_main=True), SPEC, pilot=pilot)
  assert main.likelihood_kind == "vlb-is-4t" and set(main.extra_likelihoods) == {"vlb"}
  for bad, match in (({"is_main": True}, "is_timesteps"), ({"is_timesteps": -1}, "is_timesteps"),
                     ({"is_timesteps": 4, "is_uniform_share": 0.0}, "is_uniform_share"),
                     ({"is_timesteps": 4, "is_pilot_examples": 0}, "is_pilot_examples"),
                     ({"is_timesteps": 4, "is_sampling": "sobol"}, "is_sampling")):
    with pytest.raises(GenfamError, match=match):
      family_module.make_family(_config(**bad), SPEC, pilot=pilot)


@pytest.mark.slow   # ~30-80 s on the shared 2-core CPU: the smoke U-Net's full bound and estimate, compiled
def test_family_estimate_agrees_with_the_full_bound_on_the_same_images():
  """A smoke model (random weights), 96 images: the per-image difference of 'vlb-is-4t' and the full
  bound has mean 0 (both unbiased for the same bound); |mean| < 4 standard errors of the paired
  difference, fixed seeds. The pilot runs once (prepare) or per call, with the same q."""
  c = _config(is_timesteps=4, is_pilot_examples=6, is_pilot_timesteps=8)
  family = family_module.make_family(c, SPEC, pilot=_batch(6, 99))      # pilot images: not the test images
  params = _random_params(family)
  fn = family.extra_likelihoods["vlb-is-4t"]
  prepared = fn.prepare(params)
  q = prepared.proposal
  assert q.shape == (c.diffusion.num_steps,) and q[0] == 0 and abs(q.sum() - 1) < 1e-5
  assert q[1:].min() >= c.eval.is_uniform_share / (c.diffusion.num_steps - 1) * (1 - 1e-5)
  batch, key = _batch(96, 3), jax.random.PRNGKey(5)
  est = jax.jit(prepared)(params, batch, key)
  np.testing.assert_allclose(jax.jit(fn)(params, batch, key)["bpd"], est["bpd"], rtol=1e-4)   # same q
  full = jax.jit(family.log_likelihood)(params, batch, jax.random.PRNGKey(6))
  assert set(est) == set(full) | {"timestep_variance"}
  np.testing.assert_allclose(est["bpd"], sum(v for k, v in est.items() if k.endswith("_bpd")), rtol=1e-6)
  np.testing.assert_allclose(est["prior_bpd"], full["prior_bpd"], rtol=1e-6)      # exact, no network
  np.testing.assert_allclose(est["label_bpd"], full["label_bpd"], rtol=1e-6)
  diff = np.asarray(est["bpd"], np.float64) - np.asarray(full["bpd"], np.float64)
  se = diff.std(ddof=1) / math.sqrt(len(diff))
  assert se > 0 and abs(diff.mean()) < 4 * se, (diff.mean(), se)
  assert float(np.mean(est["timestep_variance"])) > 0


def test_evaluation_prepares_the_pilot_once_per_report():
  calls = []

  class Fn:
    def __call__(self, params, batch, rng):
      raise AssertionError("the evaluation must use the prepared function")

    def prepare(self, params):
      calls.append(params)
      return lambda params, batch, rng: {"bpd": jnp.sum(batch["image"].reshape(batch["image"].shape[0], -1), -1)
                                         * 0.0 + params}

  source = [{"image": np.full((8, 8, 1), i, np.uint8), "label": np.int32(0)} for i in range(10)]
  from genfam import sharding
  report = evaluate.likelihood_report(Fn(), jnp.float32(2.5), source, jax.random.PRNGKey(0), sharding.data_mesh(),
                                      kind="vlb-is-4t", num_bins=17, batch_size=4)
  assert len(calls) == 1 and report["bpd"] == pytest.approx(2.5) and report["num_examples"] == 10
