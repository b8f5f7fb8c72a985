"""The family contract (genfam/family.py) of every config in configs/ and of the caption-conditional
variants: likelihood kinds are the labelled ones of docs/DESIGN.md and every family's reports use
them; each family's functions take and return what the contract says (shapes and dtypes, traced
with jax.eval_shape, so every config is checked in seconds); models that are not generative report
test metrics instead."""
import functools
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import registry, sharding
from genfam.data import sources
from genfam.evaluation import evaluate
from genfam.family import Family, check_likelihood_kind
from tests.conftest import REPO, load_config


@pytest.mark.parametrize("kind", ["exact", "elbo", "vlb", "ais", "iwae-1", "iwae-1000", "vlb-sampled-50t"])
def test_known_likelihood_kinds(kind):
  assert check_likelihood_kind(kind) == kind


@pytest.mark.parametrize("kind", ["nll", "iwae-", "iwae-k", "vlb-sampled-t", "vlb-sampled-50", "bpd"])
def test_unknown_likelihood_kinds_are_refused(kind):
  with pytest.raises(ValueError, match="unknown likelihood kind"):
    check_likelihood_kind(kind)


# Every config in configs/ (smoke variant), and the caption-conditional variants, built with a
# stand-in for the frozen CLIP text encoder their configs name.
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
VARIANTS = [(name, "smoke") for name in CONFIGS] + [("ddpm", "caption_smoke"), ("gan", "caption_smoke"),
                                                    ("classifier", "noisy_smoke"), ("clip", "noisy_smoke"),
                                                    ("latent_diffusion", "caption_smoke"),
                                                    ("code_prior", "label_smoke"), ("code_prior", "caption_smoke")]
GENERATIVE = {"classifier": False, "clip": False, "style_encoder": False}   # every other config is generative
BATCH, NUM = 4, 3   # abstract shapes: jax.eval_shape traces every function, nothing is compiled or run


def test_the_variants_cover_every_config():
  assert {name for name, _ in VARIANTS} == set(CONFIGS) and len(CONFIGS) >= 11


def _stand_in_text_encoder(tokens):  # int32 [B, L] -> [B, 6] unit norm
  table = jax.random.normal(jax.random.key(42), (128, 6))
  mean = jnp.sum(table[tokens % 128] * (tokens > 0)[..., None], axis=1)
  return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-6)


def _fewer_layers(c):
  """The smoke model with one of each repeated piece: tracing (jax.eval_shape) costs by the layers
  traced (and the optimizer's by the parameters), and the contract's shapes and dtypes do not depend
  on how many repeat (the layers are the nets' own tests'): a U-Net of one level without attention,
  one coupling of each kind (RealNVP), one step per level (Glow), one transformer block, one GAN level."""
  m = c.model
  if "channel_mult" in m:
    m.channel_mult, m.attn_resolutions = (1,), ()
  if "couplings" in m:
    m.couplings = (1, 1, 1)
  if m.get("kind", "") == "glow":
    m.num_steps = 1
  if "depth" in m:
    m.depth = 1
  if c.family == "gan":
    m.num_levels = 1
  return c


@functools.lru_cache(maxsize=None)   # built once for the tests below that check the same config
def _family(name, variant):
  c = load_config(name, variant)
  spec = sources.dataset_spec(c.data.name)
  c = _fewer_layers(c)
  text = "text_encoder_workdir" in c.model and (   # as family_inputs: a caption model's or a noisy CLIP's
      c.model.get("condition", "") == "caption" or c.model.get("noise_conditional", False))
  inputs = {"encode_text": _stand_in_text_encoder} if text else {}
  if "autoencoder_workdir" in c.model:   # a two-stage prior: its frozen stage 1 (model.autoencoder_config)
    inputs["autoencoder"] = _stand_in_autoencoder(c.model.autoencoder_config)
  if "generator_workdir" in c.model:     # the style encoder: its frozen GAN
    inputs["generator"] = _stand_in_autoencoder("gan")
  return c, spec, registry.make_family(c, spec, **inputs)


@functools.lru_cache(maxsize=None)
def _stand_in_autoencoder(config_name):
  """A frozen stage-1 model as the loop hands it over (genfam.loop.frozen.Frozen): configs/<config_name>.py's
  smoke variant with zero parameters of its shapes (nothing is compiled)."""
  from genfam.loop import frozen
  c = load_config(config_name)
  spec = sources.dataset_spec(c.data.name)
  family = registry.make_family(c, spec)
  state = jax.eval_shape(family.init, jax.random.PRNGKey(0), frozen.example_batch(spec, 2))
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), family.eval_params(state))
  return frozen.Frozen(c, spec, params, dict(family.exports or {}), 0)


def _batch(spec, size=BATCH):
  """A batch's shapes and dtypes (genfam/family.py), with the evaluation's mask."""
  shape = jax.ShapeDtypeStruct
  return {"image": shape((size, *spec.image_shape), jnp.uint8), "label": shape((size,), jnp.int32),
          "caption": shape((size, spec.caption_length), jnp.int32),
          "attributes": shape((size, len(spec.attribute_names)), jnp.int32), "mask": shape((size,), jnp.bool_)}


KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)   # a jax.random.PRNGKey


@pytest.mark.parametrize("config, variant", VARIANTS)
def test_every_family_labels_its_likelihoods(config, variant):
  c, _, family = _family(config, variant)
  assert (family.log_likelihood is not None) == GENERATIVE.get(config, True)
  if variant.startswith("caption"):
    assert family.likelihood_condition == "caption"
  for kind in (family.likelihood_kind, *(family.extra_likelihoods or {})) if family.log_likelihood else ():
    assert check_likelihood_kind(kind) == kind
  assert family.name and (family.likelihood_kind == "") == (family.log_likelihood is None)


def _is_float(x, shape):
  return x.shape == shape and jnp.issubdtype(x.dtype, jnp.floating)


@pytest.mark.parametrize("config, variant", VARIANTS)
def test_every_family_keeps_the_contract(config, variant):
  """init -> state; update -> (a state of the same structure, shapes and dtypes; metrics with a
  scalar 'loss', each a scalar or 1-D); eval_params; log_likelihood and every extra bound ->
  {part: [B]} float with 'bpd'; sample -> uint8 [num, H, W, C], with and without a condition of
  the family's kind; test_metrics -> {name: [B]} holding the headline, each '<name>_chance' beside
  '<name>'. Shapes only (jax.eval_shape): the values are the end-to-end tests' (tests/test_configs_e2e.py)."""
  c, spec, family = _family(config, variant)
  batch = _batch(spec)
  state = jax.eval_shape(family.init, KEY, batch)
  new_state, metrics = jax.eval_shape(family.update, state, batch, KEY)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  for new, old in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
    assert (new.shape, new.dtype) == (old.shape, old.dtype)
  assert _is_float(metrics["loss"], ()), metrics["loss"]
  assert all(m.ndim <= 1 for m in jax.tree.leaves(metrics)), metrics
  params = jax.eval_shape(family.eval_params, state)
  if family.log_likelihood is not None:
    for kind, fn in {family.likelihood_kind: family.log_likelihood, **(family.extra_likelihoods or {})}.items():
      parts = jax.eval_shape(fn, params, batch, KEY)
      assert "bpd" in parts and all(_is_float(p, (BATCH,)) for p in parts.values()), (kind, parts)
  else:
    assert family.sample is None and family.test_metrics is not None
  if family.sample is not None:
    conditions = [None]   # concrete conditions (a sampler may read them on the host), abstract parameters
    if variant.startswith("caption"):
      conditions.append(np.ones((NUM, spec.caption_length), np.int32))
    elif c.model.get("class_conditional", False) or c.model.get("condition", "") == "label":
      conditions.append(np.arange(NUM, dtype=np.int32) % len(spec.class_names))
    for condition in conditions:
      images = jax.eval_shape(lambda p, k: family.sample(p, k, NUM, condition), params, KEY)  # noqa: B023
      assert images.shape == (NUM, *spec.image_shape) and images.dtype == jnp.uint8, (condition, images)
  if family.test_metrics is not None:
    values = jax.eval_shape(family.test_metrics, params, batch, KEY)
    assert family.headline_metric in values
    assert all(_is_float(v, (BATCH,)) for v in values.values()), values
    assert all(k[:-len("_chance")] in values for k in values if k.endswith("_chance"))


# What other models restore from a workdir (genfam/loop/frozen.py): the classifier's features, CLIP's encoders.
EXPORTS = {"classifier": {"features": ("image",)}, "clip": {"encode_text": ("caption",), "encode_image": ("image",)}}


@pytest.mark.parametrize("config", sorted(EXPORTS))
def test_exports_are_functions_of_the_eval_params(config):
  _, spec, family = _family(config, "smoke")
  batch = _batch(spec)
  params = jax.eval_shape(family.eval_params, jax.eval_shape(family.init, KEY, batch))
  for name, args in EXPORTS[config].items():
    out = jax.eval_shape(family.exports[name], params, *(batch[a] for a in args))
    assert out.ndim == 2 and out.shape[0] == BATCH and jnp.issubdtype(out.dtype, jnp.floating), (name, out)


@pytest.mark.parametrize("config", ["classifier", "clip"])
def test_models_that_are_not_generative_report_metrics(config):
  """No likelihood and no sampler: test metrics with a headline, and functions for other models."""
  c = load_config(config)
  family = registry.make_family(c, sources.dataset_spec(c.data.name))
  assert family.log_likelihood is None and family.sample is None
  assert family.test_metrics is not None and family.headline_metric and family.exports


def make(config, spec):
  """A family that reports nothing (neither likelihood nor metrics), for the registry test below."""
  del config, spec
  return Family(name="nothing", init=None, update=None, eval_params=None, log_likelihood=None,
                likelihood_kind="", sample=None)


def test_a_family_that_reports_nothing_is_refused(monkeypatch):
  monkeypatch.setitem(registry._FAMILIES, "nothing", __name__)
  c = load_config("independent")
  c.family = "nothing"
  with pytest.raises(ValueError, match="reports nothing"):
    registry.make_family(c, sources.dataset_spec(c.data.name))


def test_metrics_report_drops_padding_and_leads_with_the_headline():
  """5 examples in batches of 2: the padded row of the last batch is not counted; the
  metric function sees the mask."""
  source = [{"image": np.zeros((2, 2, 1), np.uint8), "label": np.int32(i)} for i in range(5)]

  def fn(params, batch, rng):
    del params, rng
    label = batch["label"].astype(jnp.float32)
    return {"value": label, "value_chance": jnp.full_like(label, 0.5), "seen": batch["mask"].astype(jnp.float32)}

  report = evaluate.metrics_report(fn, None, source, jax.random.PRNGKey(0), sharding.data_mesh(), headline="seen",
                                   batch_size=2)
  assert list(report)[:3] == ["kind", "headline", "seen"] and report["kind"] == "metrics"
  assert report["num_examples"] == 5 and report["gallery_size"] == 2
  assert report["seen"] == 1.0 and report["value"] == 2.0 and report["value_chance"] == 0.5
  np.testing.assert_allclose(report["value_stderr"], np.std(np.arange(5), ddof=1) / np.sqrt(5))
  assert "value_chance_stderr" not in report
  lines = evaluate.describe({"metrics": report}).splitlines()
  assert lines[0].startswith("test metrics: 5 examples") and lines[1].startswith("test seen: 1.0000")
  assert "test value: 2.0000 ± 0.7071 (chance 0.5000)" in lines
