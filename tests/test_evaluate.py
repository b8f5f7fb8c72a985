"""The evaluation's mean, standard error and count against an independent computation,
with a padded last batch, end to end."""
import math

import jax
import numpy as np

from genfam import registry, sharding
from genfam.data import sources
from genfam.evaluation import evaluate
from genfam.families import independent
from tests.conftest import load_config


def test_mean_stderr_and_count_match_a_direct_computation_with_a_padded_last_batch():
  c = load_config("independent")
  spec, srcs = sources.data_sources(c.data)
  family = registry.make_family(c, spec)
  state = family.init(jax.random.PRNGKey(0), None)
  params = family.eval_params(state)
  params = {"logits": jax.random.normal(jax.random.PRNGKey(3), params["logits"].shape)}  # not uniform
  num_examples, batch = 100, 32  # 3 full batches and one of 4 real rows + 28 padding rows
  report = evaluate.evaluate_family(family, params, srcs["test"], jax.random.PRNGKey(1), sharding.data_mesh(),
                                    num_bins=spec.num_bins, batch_size=batch, num_examples=num_examples)["exact"]
  images = np.stack([srcs["test"][i]["image"] for i in range(num_examples)])
  labels = np.array([srcs["test"][i]["label"] for i in range(num_examples)])
  nats = -np.asarray(independent.log_prob(params["logits"], images, labels, conditional=False), np.float64)
  bpd = nats / (spec.num_dims * math.log(2))  # a discrete model: -log2 p(x) / D
  assert report["num_examples"] == num_examples
  np.testing.assert_allclose(report["bpd"], bpd.mean(), rtol=1e-6)
  np.testing.assert_allclose(report["bpd_stderr"], bpd.std(ddof=1) / math.sqrt(num_examples), rtol=1e-5)
