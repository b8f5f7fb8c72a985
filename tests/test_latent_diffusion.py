"""Latent diffusion (genfam/families/two_stage/latent_diffusion.py, genfam.diffusion.continuous's
continuous-data bound) against closed forms, float64:

- the diffusion prior's continuous-time bound on a Gaussian latent density N(mu, diag v) with the exact
  denoiser: each term (KL to N(0, I), the Gaussian reconstruction term, the diffusion loss) against
  its closed form, with many (t, eps) draws for the stochastic one, for a linear and a non-linear
  gamma with the same endpoints; the bound is above -log N(z; mu, v) and reaches it as the endpoints
  widen;
- LSGM's bound for a linear Gaussian autoencoder (Gaussian decoder, Gaussian encoder, that prior):
  decoder, entropy and prior terms against their closed forms over many draws, and the total above
  the exact -log p(x);
- the entropy's closed form; DDIM's continuous-time schedule against schedules.schedule_from_betas;
- the family: guidance w = 1 / 0 is the conditional / unconditional model, its bound's parts add up,
  bad configs get one line; end to end (slow): stage 1 and stage 2 smoke runs, caption and sentence.
"""
import functools
import math
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from genfam import registry
from genfam.data import captions, sources
from genfam.diffusion import continuous, schedules
from genfam.errors import GenfamError
from genfam.families.two_stage import latent_diffusion
from genfam.families.two_stage.latent_autoencoder import gaussian_entropy
from genfam.loop.frozen import Frozen
from tests.conftest import REPO, load_config
from tests.test_frozen import clip_workdir  # noqa: F401 (module-scoped fixture: a trained CLIP smoke workdir)

G0, G1 = -6.0, 4.0
MU, VAR = np.array([0.3, -0.8]), np.array([0.5, 2.0])      # the latents' Gaussian N(mu, diag v)


def _gammas():
  """A linear and a non-linear monotone gamma with the same endpoints G0, G1."""
  return {"linear": continuous.linear_gamma(G0, G1), "quadratic": lambda t: G0 + (G1 - G0) * t * t}


def _exact_eps(gamma_fn):
  """E[eps | z_t] for z ~ N(MU, diag VAR): sigma (z_t - alpha mu) / (alpha^2 v + sigma^2)."""
  def eps_fn(z_t, t):
    alpha, sigma = continuous.alpha_sigma(gamma_fn(t)[:, None])
    return sigma * (z_t - alpha * MU) / (alpha ** 2 * VAR + sigma ** 2)
  return eps_fn


def _closed_prior(second_moment, d2, g0=G0, g1=G1):
  """E of the prior's three terms for z with E[z^2] = second_moment, E[(z - mu)^2] = d2 (per dim), nats:
  KL(q(z_1|z) || N(0, I)), D_z/2 (1 + log 2 pi + g0), and 1/2 sum [log u + 1/u - d2 / (v u)]_{u_1}^{u_0}
  with u = 1 + v exp(-g) (the integral of 1/2 gamma' E||eps - eps_hat||^2 with the exact denoiser)."""
  s2, a2 = 1.0 / (1.0 + math.exp(-g1)), 1.0 / (1.0 + math.exp(g1))
  kl = np.sum(0.5 * (s2 + a2 * second_moment - math.log(s2) - 1.0))
  recon = 0.5 * len(MU) * (1.0 + math.log(2.0 * math.pi) + g0)
  f = lambda g: (lambda u: np.log(u) + 1.0 / u - d2 / (VAR * u))(1.0 + VAR * math.exp(-g))
  return kl, recon, float(np.sum(0.5 * (f(g0) - f(g1))))


def _neg_log_normal(z, mean, var):
  return float(np.sum(0.5 * np.log(2.0 * math.pi * var) + 0.5 * (z - mean) ** 2 / var))


def _mean_and_stderr(v):
  v = np.asarray(v)
  return v.mean(), v.std() / math.sqrt(v.size)


class LatentPriorBoundTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("linear", "quadratic")
  def test_each_term_against_its_closed_form(self, schedule):
    with jax.enable_x64(True):
      gamma_fn, n = _gammas()[schedule], 20000
      z = np.array([1.1, -0.4])
      parts = self.variant(lambda r: continuous.continuous_vlb(_exact_eps(gamma_fn), gamma_fn,
                                                               jnp.tile(jnp.asarray(z), (n, 1)), r, num_t=2))(
          jax.random.PRNGKey(0))
      kl, recon, diff = _closed_prior(z ** 2, (z - MU) ** 2)
      np.testing.assert_allclose(parts["prior"], kl, rtol=1e-12)
      np.testing.assert_allclose(parts["recon"], recon, rtol=1e-12)
      mean, stderr = _mean_and_stderr(parts["diffusion"])
      assert abs(mean - diff) < 4 * stderr and stderr < 0.01 * abs(diff), (mean, stderr, diff)
      # a bound on the density: above -log N(z; mu, v) by a margin the endpoints set
      assert kl + recon + diff > _neg_log_normal(z, MU, VAR)

  def test_closed_form_tends_to_the_exact_density(self):
    z = np.array([1.1, -0.4])
    gaps = [sum(_closed_prior(z ** 2, (z - MU) ** 2, -g, g)) - _neg_log_normal(z, MU, VAR) for g in (5, 10, 20, 30)]
    assert all(a > b > 0 for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-6, gaps

  def test_ddim_schedule_is_the_discrete_schedule_of_the_same_alpha_bars(self):
    with jax.enable_x64(True):
      for gamma_fn in _gammas().values():
        got = continuous.ddim_schedule(gamma_fn, 10, jnp.float64)
        abar = np.asarray(jax.nn.sigmoid(-gamma_fn(jnp.arange(1, 11, dtype=jnp.float64) / 10)))
        want = schedules.schedule_from_betas(1.0 - abar / np.append(1.0, abar[:-1]), jnp.float64)
        for name, a, b in zip(want._fields, got, want):
          np.testing.assert_allclose(a, b, rtol=1e-9, err_msg=name)


class LinearGaussianAutoencoderTest(chex.TestCase):
  """x in R^3; q(z|x) = N(A x + c, diag s^2); p(x|z) = N(W z + b, psi I); p(z) the diffusion prior of
  Gaussian latents N(MU, diag VAR) with the exact denoiser; -log p(x) = -log N(x; W mu + b, W V W^T + psi I)."""
  A = np.array([[0.4, -0.2, 0.1], [0.0, 0.3, 0.5]])
  C = np.array([0.1, -0.2])
  S = np.array([0.3, 0.6])
  W = np.array([[1.0, 0.2], [-0.5, 0.7], [0.3, -0.4]])
  B = np.array([0.05, -0.1, 0.2])
  PSI = 0.25

  def _decoder_nll(self, x):
    return lambda z: jnp.sum(0.5 * jnp.log(2 * math.pi * self.PSI) + 0.5 * (x - z @ self.W.T - self.B) ** 2 / self.PSI,
                             axis=-1)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("linear", "quadratic")
  def test_each_term_and_the_total_against_closed_forms(self, schedule):
    with jax.enable_x64(True):
      gamma_fn, n = _gammas()[schedule], 20000
      x = np.array([0.7, -1.2, 0.4])
      m = self.A @ x + self.C
      mean, log_scale = jnp.tile(jnp.asarray(m), (n, 1)), jnp.tile(jnp.log(jnp.asarray(self.S)), (n, 1))
      prior_bound = lambda z, r: continuous.continuous_vlb(_exact_eps(gamma_fn), gamma_fn, z, r)
      parts = self.variant(lambda r: latent_diffusion.lsgm_bound(self._decoder_nll(x), mean, log_scale,
                                                                 prior_bound, r))(jax.random.PRNGKey(1))
      residual = x - self.W @ m - self.B
      decoder = (0.5 * 3 * math.log(2 * math.pi * self.PSI)
                 + (residual @ residual + np.trace(self.W @ np.diag(self.S ** 2) @ self.W.T)) / (2 * self.PSI))
      entropy = -np.sum(np.log(self.S) + 0.5 * math.log(2 * math.pi * math.e))
      kl, recon, diff = _closed_prior(m ** 2 + self.S ** 2, (m - MU) ** 2 + self.S ** 2)
      for name, want in (("decoder", decoder), ("prior_kl", kl), ("prior_diffusion", diff)):
        got, stderr = _mean_and_stderr(parts[name])
        assert abs(got - want) < 4 * stderr, (name, got, want, stderr)
      np.testing.assert_allclose(parts["entropy"], entropy, rtol=1e-12)
      np.testing.assert_allclose(parts["prior_recon"], recon, rtol=1e-12)
      total = decoder + entropy + kl + recon + diff
      estimate, stderr = _mean_and_stderr(sum(parts.values()))
      assert abs(estimate - total) < 4 * stderr
      cov = self.W @ np.diag(VAR) @ self.W.T + self.PSI * np.eye(3)
      exact = 0.5 * (3 * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1]
                     + (x - self.W @ MU - self.B) @ np.linalg.solve(cov, x - self.W @ MU - self.B))
      assert total > exact and estimate - 4 * stderr > exact, (total, estimate, exact)


def test_entropy_closed_form_against_monte_carlo():
  with jax.enable_x64(True):
    log_scale = jnp.asarray([[[-1.0, 0.3], [0.5, -2.0]]])                       # [1, 2, 2] latent grid
    z = jax.random.normal(jax.random.PRNGKey(0), (200000, 2, 2), jnp.float64) * jnp.exp(log_scale)
    log_q = jnp.sum(-0.5 * (z * jnp.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi), axis=(1, 2))
    mean, stderr = _mean_and_stderr(-log_q)
    want = float(np.sum(np.asarray(log_scale) + 0.5 * math.log(2 * math.pi * math.e)))
    np.testing.assert_allclose(gaussian_entropy(log_scale), [want], rtol=1e-12)
    assert abs(mean - want) < 4 * stderr


# ---------------------------------------------------------------------------------------------
# The family, with a stand-in stage 1 (the smoke latent autoencoder at random initial weights)
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def stand_in_autoencoder(seed: int = 0) -> Frozen:
  """configs/latent_autoencoder.py:smoke at its initial weights, as the loop would hand it over."""
  config = load_config("latent_autoencoder")
  spec = sources.dataset_spec(config.data.name)
  family = registry.make_family(config, spec)
  state = family.init(jax.random.PRNGKey(seed), {"image": np.zeros((2, *spec.image_shape), np.uint8)})
  return Frozen(config, spec, family.eval_params(state), dict(family.exports), 0)


def _stand_in_text_encoder(tokens):  # int32 [B, L] -> [B, 6] unit norm: a fixed random table, mean over words
  table = jax.random.normal(jax.random.key(42), (256, 6))
  mean = jnp.sum(table[tokens % 256] * (tokens > 0)[..., None], axis=1)
  return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-6)


def _family(variant="caption_smoke", **sample_keys):
  config = load_config("latent_diffusion", variant)
  config.sample.update(sample_keys)
  spec = sources.dataset_spec(config.data.name)
  return config, spec, registry.make_family(config, spec, autoencoder=stand_in_autoencoder(),
                                            encode_text=_stand_in_text_encoder)


def _random_params(family, spec, scale=0.3):
  """Random weights in the family's shapes (zero-initialised output layers would hide the condition)."""
  shapes = jax.eval_shape(family.init, jax.random.PRNGKey(0), {"image": np.zeros((1, *spec.image_shape), np.uint8)})
  rng = np.random.default_rng(3)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), shapes.params)


def _tokens(spec, sentences=("a dark wide digit 7", "a light digit 0", "a photo of a small digit 1")):
  return np.stack([captions.encode_sentence(s, spec) for s in sentences])


def _latent_family(guidance):
  """The caption smoke family whose 'decoder' returns the sampled latents themselves."""
  config = load_config("latent_diffusion", "caption_smoke")
  config.sample.guidance = guidance
  spec, stage1 = sources.dataset_spec(config.data.name), stand_in_autoencoder()
  identity = Frozen(stage1.config, stage1.spec, stage1.params,
                    dict(stage1.functions, decode=lambda params, z, rng, how: z), 0)
  return spec, registry.make_family(config, spec, autoencoder=identity, encode_text=_stand_in_text_encoder)


def test_guidance_zero_is_the_unconditional_model_and_one_the_conditional():
  """DDIM latents: w = 0 with a caption = no caption (the null embedding), w = 1 = the conditional
  eps alone, which differs from it (the caption reaches the network); the weight w = 1 path makes one
  network call, the others two (samplers.guided_eps_fn), so these are two different programs."""
  spec, one = _latent_family(1.0)
  params, key, tokens = _random_params(one, spec), jax.random.PRNGKey(5), _tokens(spec)
  conditional = np.asarray(one.sample(params, key, 3, tokens))
  unconditional = np.asarray(one.sample(params, key, 3, None))
  _, zero = _latent_family(0.0)
  np.testing.assert_allclose(np.asarray(zero.sample(params, key, 3, tokens)), unconditional, rtol=1e-6, atol=1e-6)
  assert not np.allclose(conditional, unconditional, atol=1e-3)
  assert conditional.shape == (3, 4, 4, 2)


def test_the_bound_adds_up_and_conditions_on_the_caption():
  config, spec, family = _family()
  assert family.likelihood_kind == "lsgm-4t" and family.likelihood_condition == "caption"
  params = _random_params(family, spec)
  images = np.random.default_rng(0).integers(0, spec.num_bins, (3, *spec.image_shape)).astype(np.uint8)
  batch = {"image": images, "caption": _tokens(spec)}
  bound = jax.jit(family.log_likelihood)
  parts = bound(params, batch, jax.random.PRNGKey(0))
  np.testing.assert_allclose(parts["decoder_bpd"] + parts["entropy_bpd"] + parts["prior_bpd"], parts["bpd"],
                             rtol=1e-6)
  np.testing.assert_allclose(parts["bpd_prior_kl"] + parts["bpd_prior_recon"] + parts["bpd_prior_diffusion"],
                             parts["prior_bpd"], rtol=1e-6)
  other = dict(batch, caption=_tokens(spec)[::-1])
  assert not np.allclose(bound(params, other, jax.random.PRNGKey(0))["prior_bpd"],
                         parts["prior_bpd"]), "the bound must be conditioned on each image's caption"


@pytest.mark.parametrize("keys, message", [
    ({}, "needs its frozen stage 1"),
    ({"model.class_conditional": True}, "class_conditional=False"),
    ({"diffusion.bound_condition": "label"}, "unknown diffusion.bound_condition"),
    ({"sample.decode": "mean"}, "unknown sample.decode"),
])
def test_bad_configs_get_one_line(keys, message):
  config = load_config("latent_diffusion", "smoke")
  for key, value in keys.items():
    section, name = key.split(".")
    config[section][name] = value
  spec = sources.dataset_spec(config.data.name)
  inputs = {"autoencoder": stand_in_autoencoder()} if keys else {}
  with pytest.raises(GenfamError, match=message) as e:
    registry.make_family(config, spec, **inputs)
  assert "\n" not in str(e.value)


def test_a_caption_bound_needs_a_caption_model():
  config = load_config("latent_diffusion", "smoke")
  config.diffusion.bound_condition = "caption"
  with pytest.raises(GenfamError, match="needs a caption model"):
    registry.make_family(config, sources.dataset_spec(config.data.name), autoencoder=stand_in_autoencoder())


# ---------------------------------------------------------------------------------------------
# End to end (slow): stage 1, then the caption prior on it, evaluated and sampled from a sentence
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_stages_train_evaluate_and_sample_a_sentence_through_the_cli(clip_workdir, tmp_path):  # noqa: F811
  """configs/latent_autoencoder.py:smoke a few steps, configs/latent_diffusion.py:caption_smoke on its
  workdir (and a CLIP smoke workdir): the bound is 'lsgm-4t', conditional on the caption, its parts add
  up; --mode=sample --caption=... through genfam.main writes a grid."""
  from genfam.loop import train
  stage_one = load_config("latent_autoencoder")
  stage_one.train.progress, stage_one.train.num_steps, stage_one.train.final_eval = False, 2, False
  train.train_and_evaluate(stage_one, str(tmp_path / "stage_one"))

  config = load_config("latent_diffusion", "caption_smoke")
  config.model.autoencoder_workdir, config.model.text_encoder_workdir = str(tmp_path / "stage_one"), str(clip_workdir)
  config.train.progress, config.train.num_steps, config.sample.num = False, 2, 4
  workdir = str(tmp_path / "prior")
  summary = train.train_and_evaluate(config, workdir)
  report = summary["test"]["lsgm-4t"]
  assert report["conditional_on"] == "caption" and np.isfinite(report["bpd"])
  np.testing.assert_allclose(report["decoder_bpd"] + report["entropy_bpd"] + report["prior_bpd"], report["bpd"],
                             rtol=1e-5)
  assert os.path.getsize(os.path.join(workdir, "samples.png")) > 0

  command = [sys.executable, "-m", "genfam.main", "--config=configs/latent_diffusion.py:caption_smoke",
             f"--config.model.autoencoder_workdir={tmp_path / 'stage_one'}",
             f"--config.model.text_encoder_workdir={clip_workdir}", f"--workdir={workdir}",
             "--mode=sample", "--caption=a dark wide digit 7", "--out=sentence.png"]
  out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "caption:" in out.stdout and os.path.getsize(os.path.join(workdir, "sentence.png")) > 0


@pytest.mark.slow
def test_speed_script_times_both_samplers_at_the_same_steps(tmp_path):
  """experiments/benchmarks/latent_diffusion_speed.py at tiny size: a row per model and DDIM step count, the ratio."""
  from experiments.benchmarks import latent_diffusion_speed
  result = latent_diffusion_speed.main(["--smoke", "--num=2", "--steps", "2", "--repeats=1", f"--out={tmp_path}"])
  assert [(r["model"], r["ddim_steps"]) for r in result["rows"]] == [
      ("latent_diffusion (decode=mode)", 2), ("latent_diffusion (decode=sample)", 2), ("ddpm", 2)]
  assert all(r["images_per_s"] > 0 for r in result["rows"]) and result["rows"][1]["speedup_vs_ddpm"] > 0
  assert (tmp_path / "latent_diffusion_speed.json").exists() and (tmp_path / "latent_diffusion_speed.md").exists()
