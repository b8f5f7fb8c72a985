"""Likelihood kinds are the labelled ones of DESIGN.md; every registered family's reports use them."""
import pytest

from genfam import registry
from genfam.data import sources
from genfam.family import check_likelihood_kind
from tests.conftest import load_config


@pytest.mark.parametrize("kind", ["exact", "elbo", "vlb", "ais", "iwae-1", "iwae-1000", "vlb-sampled-50t"])
def test_known_likelihood_kinds(kind):
  assert check_likelihood_kind(kind) == kind


@pytest.mark.parametrize("kind", ["nll", "iwae-", "iwae-k", "vlb-sampled-t", "vlb-sampled-50", "bpd"])
def test_unknown_likelihood_kinds_are_refused(kind):
  with pytest.raises(ValueError, match="unknown likelihood kind"):
    check_likelihood_kind(kind)


@pytest.mark.parametrize("config", ["independent", "glow", "realnvp", "vae", "ddpm"])
def test_every_family_labels_its_likelihoods(config):
  c = load_config(config)
  family = registry.make_family(c, sources.dataset_spec(c.data.name))
  for kind in (family.likelihood_kind, *(family.extra_likelihoods or {})):
    assert check_likelihood_kind(kind) == kind
