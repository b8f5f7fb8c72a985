"""A conditional likelihood says so: -log p(x | label) is never reported as -log p(x)."""
import jax
import pytest

from genfam import evaluate, registry, sharding
from genfam.data import sources
from tests.conftest import load_config


@pytest.mark.parametrize("config, conditional, want", [
    ("independent", False, ""), ("independent", True, "label"),
    ("glow", False, ""), ("glow", True, "label"),
    ("vae", False, ""), ("vae", True, "label"),
    # DDPM's bound is that of the label mixture sum_y p(x | y) / C (plus log C): unconditional.
    ("ddpm", True, ""),
])
def test_families_say_what_their_likelihood_is_conditioned_on(config, conditional, want):
  c = load_config(config)
  c.model.class_conditional = conditional
  assert registry.make_family(c, sources.dataset_spec(c.data.name)).likelihood_condition == want


@pytest.mark.parametrize("conditional", [False, True])
def test_reports_and_printed_lines_carry_the_condition(conditional):
  c = load_config("independent")
  c.model.class_conditional = conditional
  spec, srcs = sources.data_sources(c.data)
  family = registry.make_family(c, spec)
  state = family.init(jax.random.PRNGKey(0), None)
  reports = evaluate.evaluate_family(family, family.eval_params(state), srcs["test"], jax.random.PRNGKey(1),
                                     sharding.data_mesh(), num_bins=spec.num_bins, batch_size=32, num_examples=32)
  report = reports["exact"]
  assert report["conditional_on"] == ("label" if conditional else None)
  line = evaluate.describe(reports)
  assert ("conditional on label: -log p(x | label)" in line) == conditional
