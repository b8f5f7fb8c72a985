"""Guidance for diffusion (docs/guidance.md, "Guidance for diffusion"): the guided DDPM and DDIM
steps (Dhariwal & Nichol's mean and eps shifts), the guidance gradient against finite
differences, classifier guidance on a Gaussian mixture whose noised class posteriors are
analytic, the noise-conditional classifier and CLIP, the diffusion family's guided sampler and
its refusals, and (slow) the three forms from the command line on trained smoke models."""
import functools
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genfam import registry
from genfam.data import sources
from genfam.diffusion import process, samplers, schedules
from genfam.errors import GenfamError
from genfam.families import diffusion
from genfam.loop import frozen, train
from tests.conftest import REPO, load_config


def _shift_fn(x, t):  # a smooth stand-in for grad log p(y | x_t): [B, ...], [B] -> [B, ...]
  return jnp.sin(x) * (1.0 + process.extract(jnp.arange(50.0), t, x.ndim) / 50.0)


def _eps_fn(x, t):
  return 0.3 * x + 0.01 * process.extract(jnp.arange(50.0), t, x.ndim)


class GuidedStepTest(chex.TestCase):
  """The guided steps against their definitions: scale 0 is the unguided step; scale s shifts
  DDPM's mean by s Sigma_t g and DDIM's eps by -sqrt(1 - a_t) s g."""

  def setUp(self):
    super().setUp()
    self.s = schedules.make_schedule("linear", 50)
    self.log_var = schedules.model_log_variance(self.s, "posterior")
    self.x = jax.random.normal(jax.random.key(0), (3, 4, 4, 1))
    self.noise = jax.random.normal(jax.random.key(1), self.x.shape)

  @chex.variants(with_jit=True, without_jit=True)
  def test_ddpm_step_is_unguided_at_scale_zero_and_shifts_the_mean_by_s_sigma_g(self):
    plain = self.variant(lambda x, t: samplers.ddpm_step(_eps_fn, self.s, self.log_var, x, t, self.noise))
    guided = self.variant(lambda x, t, scale: samplers.ddpm_step(_eps_fn, self.s, self.log_var, x, t, self.noise,
                                                                 False, samplers.Guidance(_shift_fn, scale)))
    for t in (0, 17, 49):
      np.testing.assert_array_equal(guided(self.x, t, 0.0), plain(self.x, t))
      expected = 2.5 * np.exp(self.log_var[t]) * _shift_fn(self.x, jnp.full((3,), t))
      np.testing.assert_allclose(guided(self.x, t, 2.5) - plain(self.x, t), expected, rtol=1e-4, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_ddim_step_is_unguided_at_scale_zero_and_shifts_eps_by_sqrt_one_minus_abar_s_g(self):
    def shifted_eps(x, tb):   # eps - sqrt(1 - a_t) 2.5 g, by hand
      return _eps_fn(x, tb) - 2.5 * jnp.sqrt(1.0 - self.s.alpha_bars[tb])[:, None, None, None] * _shift_fn(x, tb)

    step = lambda eps_fn, x, t, t_prev, guidance=None: samplers.ddim_step(  # noqa: E731
        eps_fn, self.s, x, t, t_prev, self.noise, 0.5, False, None, guidance)
    plain = self.variant(lambda x, t, t_prev: step(_eps_fn, x, t, t_prev))
    by_hand = self.variant(lambda x, t, t_prev: step(shifted_eps, x, t, t_prev))
    guided = self.variant(lambda x, t, t_prev, scale: step(_eps_fn, x, t, t_prev, samplers.Guidance(_shift_fn, scale)))
    for t, t_prev in ((49, 30), (10, 0), (3, -1)):
      np.testing.assert_array_equal(guided(self.x, t, t_prev, 0.0), plain(self.x, t, t_prev))
      np.testing.assert_allclose(guided(self.x, t, t_prev, 2.5), by_hand(self.x, t, t_prev), rtol=1e-5, atol=1e-6)
      assert not np.allclose(by_hand(self.x, t, t_prev), plain(self.x, t, t_prev), atol=1e-3)


# A 1-d Gaussian mixture: its noised marginals q_t(x) = sum_k pi_k N(sqrt(a_t) mu_k, a_t sd_k^2 + 1 - a_t),
# its exact eps-predictor eps(x_t, t) = -sqrt(1 - a_t) grad log q_t(x_t), and its class posteriors.
PI, MU, SD = jnp.array([0.7, 0.3]), jnp.array([-1.0, 1.0]), jnp.array([0.4, 0.3])
NUM_STEPS, NUM_SAMPLES = 200, 2000


def _mixture(s):
  def component_log_density(x, t):   # x [B, 1], t [B] -> log pi_k N_k(x) [B, K]
    a = s.alpha_bars[t][:, None]
    mean, var = jnp.sqrt(a) * MU[None], a * SD[None] ** 2 + 1.0 - a
    return jnp.log(PI)[None] - 0.5 * (x - mean) ** 2 / var - 0.5 * jnp.log(2 * jnp.pi * var)

  def log_marginal(x, t):
    return jax.nn.logsumexp(component_log_density(x, t), axis=1)

  def eps_fn(x, t):
    score = jax.grad(lambda x_: log_marginal(x_, t).sum())(x)
    return -process.extract(s.sqrt_one_minus_alpha_bars, t, x.ndim) * score

  def log_posterior(y):
    return lambda x, t: component_log_density(x, t)[:, y] - log_marginal(x, t)

  return eps_fn, log_posterior


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_classifier_guidance_at_scale_one_samples_the_class_conditional_distribution(sampler):
  """With the mixture's exact eps and its exact p(y = 1 | x_t), scale 1 samples N(mu_1, sd_1^2) (DDPM over
  all T = 200 steps; deterministic DDIM over all 200), the unguided sampler the mixture. Tolerances:
  the mean within 4 standard errors (sd / sqrt(n) for n = 2000: 0.027 guided, 0.088 unguided), the sd
  within 0.03 (its SE is 0.005; the rest allows the discretization's bias, measured at 0.013 for DDIM);
  the fraction on the class's side x > 0 (exactly Phi(1 / 0.3) = 0.99957) at least 0.99, while the
  unguided fraction (exactly 0.30) is within 4 binomial SEs (0.041)."""
  with jax.enable_x64(True):
    s = schedules.make_schedule("linear", NUM_STEPS, jnp.float64)
    eps_fn, log_posterior = _mixture(s)
    guidance = samplers.Guidance(samplers.log_density_gradient(log_posterior(1)), 1.0)
    rng, shape = jax.random.key(0), (NUM_SAMPLES, 1)

    def draw(guidance):
      if sampler == "ddpm":
        return samplers.ddpm_sample(eps_fn, s, schedules.model_log_variance(s, "posterior"), rng, shape,
                                    dtype=jnp.float64, guidance=guidance)
      ts = samplers.ddim_timesteps(NUM_STEPS, NUM_STEPS, "trailing")
      return samplers.ddim_sample(eps_fn, s, ts, rng, shape, dtype=jnp.float64, guidance=guidance)

    guided, plain = (np.asarray(jax.jit(lambda g=g: draw(g))())[:, 0] for g in (guidance, None))
  mixture_mean = float(jnp.sum(PI * MU))
  mixture_sd = float(jnp.sqrt(jnp.sum(PI * (SD ** 2 + MU ** 2)) - mixture_mean ** 2))
  assert abs(guided.mean() - 1.0) < 4 * 0.3 / np.sqrt(NUM_SAMPLES), guided.mean()
  assert abs(guided.std() - 0.3) < 0.03, guided.std()
  assert (guided > 0).mean() >= 0.99 and stats.norm.cdf(1.0 / 0.3) > 0.999
  assert abs(plain.mean() - mixture_mean) < 4 * mixture_sd / np.sqrt(NUM_SAMPLES), plain.mean()
  assert abs((plain > 0).mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / NUM_SAMPLES), (plain > 0).mean()


def _noisy_family(name):
  """configs/<name>.py:noisy_smoke in float64 convolutions (a stand-in frozen text encoder for CLIP)."""
  config = load_config(name, "noisy_smoke")
  with config.unlocked():
    config.model.dtype = "float64"
  spec = sources.dataset_spec(config.data.name)
  inputs = {"encode_text": _stand_in_text_encoder} if name == "clip" else {}
  return config, spec, registry.make_family(config, spec, **inputs)


def _stand_in_text_encoder(tokens):  # int32 [B, L] -> [B, 6] unit norm
  table = jax.random.normal(jax.random.key(42), (128, 6), jnp.float64 if jax.config.x64_enabled else jnp.float32)
  mean = jnp.sum(table[tokens % 128] * (tokens > 0)[..., None], axis=1)
  return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-6)


@functools.lru_cache(maxsize=None)
def _initial_state(name):
  """(spec, family, state): configs/<name>.py:noisy_smoke's family (float32) and its initial state,
  initialised once (one jitted init: its compilation is most of a test's time) for the tests below,
  which train it or cast its parameters to float64."""
  with jax.enable_x64(False):   # (the first caller may be a float64 test)
    config = load_config(name, "noisy_smoke")
    spec = sources.dataset_spec(config.data.name)
    family = registry.make_family(config, spec, **({"encode_text": _stand_in_text_encoder} if name == "clip" else {}))
    return spec, family, jax.jit(family.init)(jax.random.key(0), frozen.example_batch(spec, 2))


def _noisy_family_and_params(name):
  """(spec, the float64 family, its parameters in float64) (call under jax.enable_x64)."""
  _, spec, family = _noisy_family(name)
  params = _initial_state(name)[1].eval_params(_initial_state(name)[2])
  return spec, family, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)


@pytest.mark.parametrize("name", ["classifier", "clip"])
def test_the_guidance_gradient_matches_finite_differences(name):
  """grad_x of the noisy classifier's log p(y | x_t, t) and of the noisy CLIP's s <v(x_t, t), e(caption)>
  (`samplers.log_density_gradient`: each example's own gradient) against central differences along
  random directions, float64; and example i's gradient does not depend on the other examples."""
  with jax.enable_x64(True):
    spec, family, params = _noisy_family_and_params(name)
    x = jax.random.normal(jax.random.key(1), (3, *spec.image_shape), jnp.float64)
    t = jnp.array([0, 7, 19])
    if name == "classifier":
      condition = jnp.array([1, 2, 3])
    else:
      from genfam.families.auxiliary import clip
      condition = jnp.asarray(clip.evaluation_prompts(spec)[0][:5])
    # x, t and the condition are arguments: one compiled objective and one compiled gradient serve every call
    objective = jax.jit(lambda x_, t_, c_: family.exports["guidance_objective"](params, x_, t_, c_))
    gradient = jax.jit(lambda x_, t_, c_: samplers.log_density_gradient(
        lambda a, b: objective(a, b, c_))(x_, t_))
    grad = gradient(x, t, condition[:3])
    for seed in range(3):
      direction = jax.random.normal(jax.random.key(10 + seed), x.shape, jnp.float64)
      h = 1e-5
      central = (objective(x + h * direction, t, condition[:3]) - objective(x - h * direction, t, condition[:3])) / (
          2 * h)
      np.testing.assert_allclose(jnp.sum((grad * direction).reshape(3, -1), axis=1), central, rtol=1e-6,
                                 atol=1e-9)
    # example 1 beside other examples (other images, timesteps and conditions): the same gradient
    others = x.at[0].set(-x[2]).at[2].set(2.0 * x[0])
    beside_others = gradient(others, jnp.array([12, 7, 3]), condition[jnp.array([4, 1, 0])])
    np.testing.assert_allclose(grad[1:2], beside_others[1:2], rtol=1e-6, atol=1e-9)
    assert float(jnp.max(jnp.abs(grad))) > 0


def test_the_noisy_classifier_exports_log_p_y_given_x_t():
  """log_prob is a normalised distribution over the classes; guidance_objective picks the label's entry."""
  with jax.enable_x64(True):
    spec, family, params = _noisy_family_and_params("classifier")
    x, t = jax.random.normal(jax.random.key(3), (4, *spec.image_shape), jnp.float64), jnp.array([0, 5, 10, 19])
    labels = jnp.array([3, 1, 4, 1])
    log_prob, objective = jax.jit(lambda p: (family.exports["log_prob"](p, x, t),   # one program for both
                                             family.exports["guidance_objective"](p, x, t, labels)))(params)
    np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(log_prob, axis=1)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(objective, log_prob[jnp.arange(4), labels], rtol=1e-12)


@pytest.mark.parametrize("name", ["classifier", "clip"])
def test_the_noisy_models_learn_on_their_smoke_configs(name):
  """A few updates on one batch of noised images lower the loss (the one loop's update), and the test
  metrics hold the headline at uniform t and one class accuracy per t-bucket."""
  config = load_config(name, "noisy_smoke")
  spec, family, state = _initial_state(name)   # (init reads the images' shape only)
  batch = frozen.pilot_batch(config.data, 32, with_captions=True)   # 32 training images, labels, captions
  batch["attributes"] = np.zeros((32, spec.num_attributes), np.int32)   # (the attribute metrics' inputs only)
  update = jax.jit(family.update)
  losses = []
  for _ in range(30):
    state, metrics = update(state, batch, jax.random.key(0))   # the same noise: a fixed objective
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.8 * losses[0], losses
  values = jax.jit(family.test_metrics)(family.eval_params(state),
                                       {**batch, "mask": np.ones(len(batch["label"]), bool)}, jax.random.key(1))
  head = family.headline_metric
  assert head in values and f"{head}_chance" in values
  assert sum(k.startswith(f"{head}_t") for k in values) == 5 and f"{head}_t0_3" in values


# --- the diffusion family's guided sampler (a stand-in guide) and its refusals

def _guided_config(form, class_conditional=False, scale=1.0):
  """configs/ddpm.py:smoke with a one-level U-Net (a fraction of the compile time), guided by `form`."""
  config = load_config("ddpm", "smoke")
  config.model.class_conditional = class_conditional
  config.model.channel_mult, config.model.attn_resolutions = (1,), ()
  config.sample.guidance_form, config.sample.guidance_scale = form, scale
  return config


def _toy_guide(x, t, condition):   # a stand-in guide: a smooth [B] objective of (x_t, t, labels or tokens)
  target = jnp.asarray(condition, jnp.float32).reshape(x.shape[0], -1)
  return -jnp.sum((x.reshape(x.shape[0], -1) - 0.01 * jnp.sum(target, axis=1, keepdims=True)) ** 2, axis=1) * (
      1.0 + t / 20.0)


def _family(config, guide=_toy_guide):
  return diffusion.make(config, sources.dataset_spec(config.data.name), guide=guide)


def test_gradient_guidance_at_scale_zero_samples_as_the_unguided_family():
  """The family's sampler with the classifier form at s = 0 draws the unguided family's images (labels are
  then its target only: the model is unconditional); its samples are conditioned on labels."""
  family = _family(_guided_config("classifier", scale=0.0))
  spec = sources.dataset_spec("digits")
  params = family.eval_params(jax.jit(family.init)(jax.random.key(0), frozen.example_batch(spec, 2)))
  guided = family.sample(params, jax.random.key(5), 4, np.arange(4, dtype=np.int32))
  plain = _family(_guided_config("free")).sample(params, jax.random.key(5), 4, None)
  assert family.sample_condition == "label" and guided.dtype == np.uint8
  np.testing.assert_array_equal(guided, plain)


def test_clip_guidance_steers_toward_a_caption_or_labels_as_class_prompts():
  """'clip' on labels steers toward the class prompts' tokens, exactly as on those tokens; a label model
  sees the labels (classifier-free weight w) and the null label under a caption; a caption model sees both."""
  from genfam.families.auxiliary import clip
  spec = sources.dataset_spec("digits")
  prompts = jnp.asarray(clip.evaluation_prompts(spec)[0])                                # [C, L]
  labels = np.array([3, 7], np.int32)
  x, t = jax.random.normal(jax.random.key(0), (2, *spec.image_shape)), jnp.array([4, 9])
  label_model = diffusion.make_conditioning(_guided_config("clip", class_conditional=True).model, spec)
  by_labels = diffusion.gradient_guidance("clip", 5.0, _toy_guide, label_model, prompts, labels)
  by_prompts = diffusion.gradient_guidance("clip", 5.0, _toy_guide, label_model, prompts, prompts[labels])
  np.testing.assert_array_equal(by_labels[1].grad_fn(x, t), by_prompts[1].grad_fn(x, t))
  assert by_labels[1].scale == 5.0 and float(jnp.max(jnp.abs(by_labels[1].grad_fn(x, t)))) > 0
  np.testing.assert_array_equal(by_labels[0], labels)
  assert by_prompts[0] is None                                                 # a caption: the null label
  unconditional = diffusion.make_conditioning(_guided_config("clip").model, spec)
  assert diffusion.gradient_guidance("clip", 1.0, _toy_guide, unconditional, prompts, labels)[0] is None
  assert _family(_guided_config("clip")).sample_condition == "caption"


@pytest.mark.parametrize("form, condition, message", [
    ("classifier", None, "set --config.sample.conditional=True"),
    ("clip", None, "pass --caption="),
    ("classifier", np.ones((2, 12), np.int32), "steers toward labels, not a caption"),
])
def test_guidance_without_its_condition_is_one_line_naming_the_fix(form, condition, message):
  with pytest.raises(GenfamError, match=message) as e:
    _family(_guided_config(form)).sample(None, jax.random.key(0), 2, condition)   # refused before the network
  assert "\n" not in str(e.value)


def test_guidance_without_its_model_or_workdir_is_one_line_naming_the_fix():
  config = _guided_config("classifier")
  spec = sources.dataset_spec(config.data.name)
  with pytest.raises(GenfamError, match="configs/classifier.py:noisy .*--config.sample.guidance_classifier_workdir=DIR"):
    frozen.family_inputs(config, spec)
  config = _guided_config("clip")
  with pytest.raises(GenfamError, match="configs/clip.py:noisy .*text_encoder_workdir=CLIP_DIR.*guidance_clip_workdir"):
    frozen.family_inputs(config, spec)
  with pytest.raises(GenfamError, match="needs its noise-conditional model"):
    diffusion.make(config, spec)
  config.sample.guidance_form = "gradient"
  with pytest.raises(GenfamError, match="unknown sample.guidance_form 'gradient'"):
    diffusion.make(config, spec)
  with pytest.raises(GenfamError, match="text_encoder_workdir=DIR"):
    registry.make_family(load_config("clip", "noisy_smoke"), spec)   # the noisy CLIP without its text encoder


# --- end to end: the guides train on the one loop, and the CLI samples with each form (slow)

def _train(config, workdir, **keys):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for key, value in keys.items():
      section, name = key.split(".")
      config[section][name] = value
  config.train.num_steps, config.train.eval_every, config.train.progress = 2, 0, False
  return train.train_and_evaluate(config, str(workdir))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """Smoke workdirs: CLIP, the noisy CLIP on its text encoder, the noisy classifier, a label DDPM."""
  root = tmp_path_factory.mktemp("guidance")
  dirs = {name: root / name for name in ("clip", "noisy_clip", "noisy_classifier", "ddpm")}
  _train(load_config("clip"), dirs["clip"])
  summary = _train(load_config("clip", "noisy_smoke"), dirs["noisy_clip"],
                   **{"model.text_encoder_workdir": str(dirs["clip"])})
  assert "zero_shot_class_accuracy_t0_3" in summary["test"]["metrics"]
  summary = _train(load_config("classifier", "noisy_smoke"), dirs["noisy_classifier"])
  assert "class_accuracy_t16_19" in summary["test"]["metrics"]
  _train(load_config("ddpm"), dirs["ddpm"], **{"diffusion.sampled_t": 0, "sample.num": 4})
  return dirs


def _cli(workdir, *flags):
  return subprocess.run([sys.executable, "-m", "genfam.main", "--config=configs/ddpm.py:smoke", f"--workdir={workdir}",
                         "--mode=sample", "--config.sample.num=4", "--config.diffusion.sampled_t=0", *flags],
                        cwd=REPO, env=dict(os.environ), capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("form, flags", [
    ("free", ["--config.sample.guidance=3"]),
    ("classifier", ["--config.sample.guidance_scale=4"]),
    ("clip", ["--config.sample.guidance_scale=4", "--caption=a photo of a dark digit 7"]),
])
def test_the_cli_samples_with_each_guidance_form(trained, form, flags):
  out_png = f"{form}.png"
  keys = {"classifier": f"--config.sample.guidance_classifier_workdir={trained['noisy_classifier']}",
          "clip": f"--config.sample.guidance_clip_workdir={trained['noisy_clip']}"}
  extra = [f"--config.sample.guidance_form={form}", keys[form]] if form != "free" else []
  out = _cli(trained["ddpm"], *extra, *flags, f"--out={out_png}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert os.path.getsize(trained["ddpm"] / out_png) > 0


@pytest.mark.slow
def test_a_guide_of_another_schedule_or_a_clean_classifier_is_refused(trained, tmp_path):
  spec = sources.dataset_spec("digits")
  config = _guided_config("classifier", class_conditional=True)
  config.sample.guidance_classifier_workdir = str(trained["noisy_classifier"])
  assert frozen.family_inputs(config, spec)["guide"] is not None
  config.diffusion.schedule = "cosine"
  with pytest.raises(GenfamError, match=r"holds no noise-conditional classifier of this model's forward process "
                     r"\(cosine, T=20\): train one with .*configs/classifier.py:noisy"):
    frozen.family_inputs(config, spec)
  _train(load_config("classifier"), tmp_path / "clean")
  config.diffusion.schedule, config.sample.guidance_classifier_workdir = "linear", str(tmp_path / "clean")
  with pytest.raises(GenfamError, match="holds no noise-conditional classifier"):
    frozen.family_inputs(config, spec)
