"""A conditional likelihood says so: -log p(x | label) is never reported as -log p(x)."""
import jax
import pytest

from genfam import registry, sharding
from genfam.data import sources
from genfam.evaluation import evaluate
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


def test_a_flow_report_says_it_bounds_the_discrete_likelihood():
  c = load_config("glow")
  family = registry.make_family(c, sources.dataset_spec(c.data.name))
  assert "upper bound on the discrete negative log-likelihood" in family.likelihood_note
  reports = {"exact": {"kind": "exact", "conditional_on": None, "bpd": 3.5, "bpd_stderr": 0.01, "num_examples": 4,
                       "num_draws": 1, "num_bins": 17, "note": family.likelihood_note}}
  assert "exact for the dequantized density" in evaluate.describe(reports)


def test_an_extra_bound_on_fewer_images_carries_the_main_one_on_the_same_images():
  """The VAE's IWAE-k on the first n test images reports the ELBO on those same n beside it."""
  c = load_config("vae")
  c.eval.iwae_k = 4
  spec, srcs = sources.data_sources(c.data)
  family = registry.make_family(c, spec)
  batch = next(iter(srcs["train"][i] for i in range(1)))
  example = {k: jax.numpy.asarray(v)[None] for k, v in batch.items() if k in ("image", "label")}
  params = family.eval_params(family.init(jax.random.PRNGKey(0), example))
  mesh, key = sharding.data_mesh(), jax.random.PRNGKey(1)
  reports = evaluate.evaluate_family(family, params, srcs["test"], key, mesh, num_bins=spec.num_bins, batch_size=16,
                                     num_examples=48, extra_num_examples=16)
  same = reports["iwae-4"]["same_images"]
  assert reports["iwae-4"]["num_examples"] == same["num_examples"] == 16 and same["kind"] == "elbo"
  alone = evaluate.likelihood_report(family.log_likelihood, params, srcs["test"], key, mesh, kind="elbo",
                                     num_bins=spec.num_bins, batch_size=16, num_examples=16)
  assert same["bpd"] == alone["bpd"] and "elbo on the same 16" in evaluate.describe(reports)
  assert reports["iwae-4"]["bpd"] <= same["bpd"] + 3 * same["bpd_stderr"]  # IWAE-k is the tighter bound
