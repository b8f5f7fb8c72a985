"""The domain classifier: its heads, its exported features, its per-example test
metrics, and a short digits run whose accuracies clear their chance levels."""
import jax
import numpy as np
import pytest

from genfam import registry
from genfam.data import sources
from genfam.loop import train
from tests.conftest import load_config


def _family_and_batch(num: int = 6):
  config = load_config("classifier")
  spec = sources.dataset_spec(config.data.name)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, spec.num_bins, (num, *spec.image_shape)).astype(np.uint8),
           "label": rng.integers(0, spec.num_classes, num).astype(np.int32),
           "attributes": np.stack([rng.integers(0, len(v), num) for v in spec.attribute_values], 1).astype(np.int32)}
  return config, spec, registry.make_family(config, spec), batch


def test_heads_features_and_metrics():
  config, spec, family, batch = _family_and_batch()
  params = family.eval_params(family.init(jax.random.PRNGKey(0), batch))
  features = family.exports["features"](params, batch["image"])
  assert features.shape == (6, config.model.features) and features.dtype == np.float32
  logits = family.exports["logits"](params, batch["image"])
  assert list(logits) == ["class", *spec.attribute_names]
  assert [z.shape[1] for z in logits.values()] == [spec.num_classes, *(len(v) for v in spec.attribute_values)]
  predicted = family.exports["predict"](params, batch["image"])
  metrics = family.test_metrics(params, dict(batch, mask=np.ones(6, bool)), jax.random.PRNGKey(0))
  targets = {"class": batch["label"], **{n: batch["attributes"][:, a] for a, n in enumerate(spec.attribute_names)}}
  for head, y in targets.items():
    np.testing.assert_array_equal(metrics[f"{head}_accuracy"], (np.asarray(predicted[head]) == y).astype(np.float32))
    np.testing.assert_allclose(metrics[f"{head}_accuracy_chance"], 1.0 / logits[head].shape[1])
  assert family.sample is None and family.log_likelihood is None and family.headline_metric == "class_accuracy"


def test_class_head_only():
  config = load_config("classifier")
  config.model.attribute_heads = False
  family = registry.make_family(config, sources.dataset_spec(config.data.name))
  _, _, _, batch = _family_and_batch()
  params = family.eval_params(family.init(jax.random.PRNGKey(0), batch))
  assert list(family.exports["logits"](params, batch["image"])) == ["class"]


@pytest.mark.slow
def test_short_digits_run_clears_chance(tmp_path):
  """Some hundred steps on digits: class accuracy well above 1/10, every attribute above chance."""
  config = load_config("classifier")
  config.train.num_steps = 200
  config.train.eval_every = 0
  config.train.log_every = 100
  config.train.checkpoint_every = 200
  config.optim.learning_rate = 3e-3
  config.eval.num_examples = 0                                    # all 360 test digits
  config.eval.batch_size = 120
  report = train.train_and_evaluate(config, str(tmp_path))["test"]["metrics"]
  assert report["num_examples"] == 360 and report["class_accuracy"] > 0.8, report
  for name in ["class", *sources.dataset_spec("digits").attribute_names]:
    key = f"{name}_accuracy"
    assert report[key] > report[f"{key}_chance"] + 3 * report[f"{key}_stderr"], (key, report)
