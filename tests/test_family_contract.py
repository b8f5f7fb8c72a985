"""Likelihood kinds are the labelled ones of docs/DESIGN.md; every registered family's reports use them;
models that are not generative report test metrics instead."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import registry, sharding
from genfam.data import sources
from genfam.evaluation import evaluate
from genfam.family import Family, check_likelihood_kind
from tests.conftest import load_config


@pytest.mark.parametrize("kind", ["exact", "elbo", "vlb", "ais", "iwae-1", "iwae-1000", "vlb-sampled-50t"])
def test_known_likelihood_kinds(kind):
  assert check_likelihood_kind(kind) == kind


@pytest.mark.parametrize("kind", ["nll", "iwae-", "iwae-k", "vlb-sampled-t", "vlb-sampled-50", "bpd"])
def test_unknown_likelihood_kinds_are_refused(kind):
  with pytest.raises(ValueError, match="unknown likelihood kind"):
    check_likelihood_kind(kind)


@pytest.mark.parametrize("config", ["independent", "glow", "realnvp", "vae", "ddpm", "igpt"])
def test_every_family_labels_its_likelihoods(config):
  c = load_config(config)
  family = registry.make_family(c, sources.dataset_spec(c.data.name))
  for kind in (family.likelihood_kind, *(family.extra_likelihoods or {})):
    assert check_likelihood_kind(kind) == kind


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
