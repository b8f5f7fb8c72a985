"""The image-GPT family: exact bits/dim, normalisation, label and caption prefixes, sampling, config errors.

Tiny models on made-up dataset specs; the smoke config's end-to-end run (train,
eval, sample, resume) is in test_configs_e2e, the 8-device parity in test_multidevice.
"""
import dataclasses
import itertools
import math
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data.spec import DatasetSpec
from genfam.errors import GenfamError
from genfam.families import igpt
from tests.conftest import load_config, resume_under

CLASSES = tuple(f"class{i}" for i in range(4))
VOCAB, CAPTION_LENGTH = 11, 5


def _spec(shape=(2, 2, 1), num_bins=5):
  return DatasetSpec(name="toy", image_shape=shape, num_bins=num_bins, class_names=CLASSES)


def _caption_spec(spec):
  """`spec` with a caption vocabulary of VOCAB words and captions of CAPTION_LENGTH tokens."""
  fields = {f.name for f in dataclasses.fields(spec)}
  if {"vocabulary", "caption_length"} <= fields:
    return dataclasses.replace(spec, vocabulary=tuple(f"w{i}" for i in range(VOCAB)), caption_length=CAPTION_LENGTH)
  return types.SimpleNamespace(**dataclasses.asdict(spec), num_classes=spec.num_classes, num_dims=spec.num_dims,
                               vocab_size=VOCAB, caption_length=CAPTION_LENGTH)


def _config(condition="none", **model):
  c = load_config("igpt")
  c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_ratio = 16, 2, 2, 2
  c.model.condition = condition
  c.model.query_block = 0
  for k, v in model.items():
    c.model[k] = v
  return c


def _batch(spec, num, seed=0):
  rng = np.random.default_rng(seed)
  batch = {"image": rng.integers(0, spec.num_bins, (num, *spec.image_shape)).astype(np.uint8),
           "label": rng.integers(0, spec.num_classes, num).astype(np.int32)}
  if hasattr(spec, "caption_length"):
    caption = rng.integers(1, VOCAB, (num, spec.caption_length)).astype(np.int32)
    caption[:, 3:] = 0                                                    # padding
    batch["caption"] = caption
  return batch


PARAMS = {}


def _family(config, spec, random_head=True, seed=0):
  """(family, params): params from init, with a random head unless random_head=False (then zero: uniform).
  The params are initialised once per transformer, seed and head (both chex variants, and configs
  that differ only in sampling options or in how they name the same model, share them)."""
  family = igpt.make(config, spec)
  key = (repr(igpt.make_model(config, spec)), random_head, seed)
  if key not in PARAMS:
    params = family.eval_params(jax.jit(family.init)(jax.random.PRNGKey(seed), _batch(spec, 2)))
    if random_head:
      head = params["head"]["kernel"]
      params["head"]["kernel"] = jax.random.normal(jax.random.PRNGKey(seed + 1), head.shape)
    PARAMS[key] = params
  return family, jax.tree.map(lambda x: x, PARAMS[key])


class LikelihoodTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_zero_head_gives_log2_k_bits_per_dim(self):
    for shape, num_bins, expected in (((8, 8, 1), 17, 4.087), ((28, 28, 1), 256, 8.0)):
      spec = _spec(shape, num_bins)
      config = _config(width=8, depth=1)
      family, params = _family(config, spec, random_head=False)
      np.testing.assert_array_equal(params["head"]["kernel"], 0.0)   # the model's own init
      bpd = self.variant(family.log_likelihood)(params, _batch(spec, 3), jax.random.PRNGKey(0))["bpd"]
      chex.assert_shape(bpd, (3,))
      np.testing.assert_allclose(bpd, math.log2(num_bins), rtol=1e-6)
      assert abs(math.log2(num_bins) - expected) < 1e-3

  @chex.variants(with_jit=True, without_jit=True)
  def test_probabilities_sum_to_one_over_all_images(self):
    spec = _spec((1, 3, 1), 3)                            # D = 3, K = 3: all 27 images
    images = np.array(list(itertools.product(range(3), repeat=3)), np.uint8).reshape(27, 1, 3, 1)
    for condition, spec_c in (("none", spec), ("label", spec), ("caption", _caption_spec(spec))):
      family, params = _family(_config(condition), spec_c)
      # all 27 images under label (or caption) 0 and under 1, in one batch of 54
      batch = {"image": np.concatenate([images, images]), "label": np.repeat(np.arange(2, dtype=np.int32), 27)}
      if condition == "caption":
        batch["caption"] = np.repeat(np.array([[3, 4, 0, 0, 0], [3, 5, 0, 0, 0]], np.int32), 27, axis=0)
      bpd = np.asarray(self.variant(family.log_likelihood)(params, batch, jax.random.PRNGKey(0))["bpd"], np.float64)
      for label in range(2):
        np.testing.assert_allclose(np.sum(2.0 ** (-bpd[27 * label:27 * (label + 1)] * 3)), 1.0, rtol=1e-5,
                                   err_msg=condition)

  def test_label_prefix_matters_only_when_conditional(self):
    spec = _spec()
    batch = _batch(spec, 4)
    relabelled = dict(batch, label=(batch["label"] + 1) % spec.num_classes)
    for config, conditional in ((_config("none"), False), (_config("label"), True),
                                (_config(class_conditional=True), True)):
      family, params = _family(config, spec)
      assert family.likelihood_condition == ("label" if conditional else "")
      loglik = jax.jit(family.log_likelihood)
      a = loglik(params, batch, None)["bpd"]
      b = loglik(params, relabelled, None)["bpd"]
      if conditional:
        assert np.abs(np.asarray(a - b)).min() > 1e-5
      else:
        np.testing.assert_array_equal(a, b)

  def test_caption_prefix_words_matter_and_padding_does_not(self):
    spec = _caption_spec(_spec())
    family, params = _family(_config("caption"), spec)
    assert family.likelihood_condition == "caption"
    batch = _batch(spec, 4)
    loglik = jax.jit(family.log_likelihood)
    base = loglik(params, batch, None)["bpd"]
    reworded = dict(batch, caption=batch["caption"].copy())
    reworded["caption"][:, 1] = reworded["caption"][:, 1] % (VOCAB - 1) + 1
    assert np.abs(np.asarray(loglik(params, reworded, None)["bpd"] - base)).min() > 1e-6
    noisy = jax.tree.map(lambda x: x, params)                 # the padding embedding is never read
    noisy["prefix_embed"]["embedding"] = params["prefix_embed"]["embedding"].at[0].set(3.0)
    np.testing.assert_allclose(loglik(noisy, batch, None)["bpd"], base, rtol=0, atol=1e-6)

  def test_training_with_caption_dropout_steps(self):
    spec = _caption_spec(_spec())
    family = igpt.make(_config("caption", caption_dropout=0.5), spec)
    state = family.init(jax.random.PRNGKey(0), _batch(spec, 4))
    state, metrics = jax.jit(family.update)(state, _batch(spec, 4), jax.random.PRNGKey(1))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) == pytest.approx(float(metrics["bpd"]))


class SampleTest(chex.TestCase):

  def test_cached_and_uncached_samples_are_equal(self):
    spec = _spec((3, 3, 2), 6)
    labels = jnp.arange(5, dtype=jnp.int32) % spec.num_classes
    draws = {}
    for sampler in ("cached", "uncached"):
      config = _config("label")
      config.sample.sampler = sampler
      family, params = _family(config, spec)
      draws[sampler] = np.asarray(family.sample(params, jax.random.PRNGKey(3), 5, labels))
    assert draws["cached"].shape == (5, 3, 3, 2) and draws["cached"].dtype == np.uint8
    assert draws["cached"].max() < spec.num_bins
    np.testing.assert_array_equal(draws["cached"], draws["uncached"])

  def test_conditions_of_each_kind(self):
    spec = _caption_spec(_spec())
    family, params = _family(_config("caption"), spec)
    caption = np.zeros((3, CAPTION_LENGTH), np.int32)
    caption[:, :2] = [[2, 3], [4, 5], [6, 7]]
    for condition in (caption, None):                         # None: the empty caption
      out = family.sample(params, jax.random.PRNGKey(0), 3, condition)
      assert out.shape == (3, *spec.image_shape) and out.dtype == jnp.uint8
    with pytest.raises(GenfamError, match="caption tokens"):
      family.sample(params, jax.random.PRNGKey(0), 3, np.arange(3))
    family, params = _family(_config("label"), spec)
    assert family.sample(params, jax.random.PRNGKey(0), 3, None).shape == (3, *spec.image_shape)
    with pytest.raises(GenfamError, match="labels"):
      family.sample(params, jax.random.PRNGKey(0), 3, caption)
    family, params = _family(_config("none"), spec)            # unconditional: condition ignored
    a = family.sample(params, jax.random.PRNGKey(0), 3, np.arange(3))
    np.testing.assert_array_equal(a, family.sample(params, jax.random.PRNGKey(0), 3, None))


@pytest.mark.parametrize("key,value,message", [
    ("model.condition", "text", "model.condition"),
    ("model.dtype", "float16", "model.dtype"),
    ("model.num_heads", 3, "num_heads"),
    ("sample.sampler", "fast", "sample.sampler"),
    ("sample.temperature", 0.0, "sample.temperature"),
    ("sample.top_k", -1, "sample.top_k"),
])
def test_bad_config_is_refused_in_one_line(key, value, message):
  config = _config()
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(GenfamError, match=message) as err:
    igpt.make(config, _spec())
  assert "\n" not in str(err.value)


def test_label_and_caption_prefix_together_are_refused():
  with pytest.raises(GenfamError, match="class_conditional"):
    igpt.make(_config("caption", class_conditional=True), _caption_spec(_spec()))


def test_wrong_image_shape_is_refused():
  family = igpt.make(_config(), _spec())
  with pytest.raises(GenfamError, match="images"):
    family.init(jax.random.PRNGKey(0), _batch(_spec((3, 3, 1)), 2))


@pytest.mark.slow
def test_a_run_resumes_under_another_query_block(tmp_path):
  """model.query_block changes how attention is computed, not the parameters or the function:
  a run resumes under another block size without --allow_config_change, and the change is
  recorded in the workdir's config history."""
  config = load_config("igpt")
  assert 0 < config.model.query_block < 8 * 8          # digits: 64 pixels, attention in blocks
  changes = resume_under(config, str(tmp_path), "model.query_block", 0)
  assert changes["model.query_block"] == [24, 0]
