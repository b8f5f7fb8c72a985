"""The one sample-quality evaluation (genfam/evaluation/sample_quality.py), with stand-in judges.

The judges here are plain functions of pixels (features = the flattened image,
class = a fixed guess), so each number can be checked against an independent
computation: the floor's FID is fid.fid on the same features, a sampler that
returns the train images scores the floor exactly, conditions are the test
split's own labels and captions, and real test images agree with their own
captions on every measured attribute they name (agreement 1).
"""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data import captions, pipeline, sources
from genfam.errors import GenfamError
from genfam.evaluation import fid, sample_quality
from genfam.loop import train
from tests.conftest import load_config


@pytest.fixture(scope="module")
def data():
  return sources.load(load_config("independent").data)


def _pixels(x):  # uint8 [B, H, W, C] -> float32 [B, D]
  return jnp.asarray(x, jnp.float32).reshape(len(x), -1)


def _judges(guess: int = 0):
  """A stand-in classifier (features: pixels; every image is class `guess`) and CLIP
  (cosine 0.5 for every pair)."""
  classifier = types.SimpleNamespace(params=None, functions={
      "features": lambda params, x: _pixels(x),
      "predict": lambda params, x: {"class": jnp.full((len(x),), guess, jnp.int32)}})
  clip = types.SimpleNamespace(params=None, functions={
      "agreement": lambda params, x, t: jnp.full((len(x),), 0.5, jnp.float32)})
  return sample_quality.Judges(classifier, clip)


def test_reference_is_what_eval_batches_read(data):
  test = data.sources["test"]
  ref = sample_quality.reference(test, 40)
  (batch, mask), = list(pipeline.eval_batches(test, 40, 40))
  assert mask.all()
  for key in ("image", "label", "attributes", "caption"):
    np.testing.assert_array_equal(ref[key], batch[key], err_msg=key)
  assert len(sample_quality.reference(test, 10**6)["label"]) == len(test)


def test_named_attributes_reads_the_caption(data):
  spec = data.spec
  tokens = np.stack([captions.encode_sentence(s, spec) for s in
                     ("a dark, wide digit 3", "a photo of a digit 7", "this digit 1 is patterned and large")])
  named = sample_quality.named_attributes(tokens, spec)
  # columns: brightness (dark mid light), size (small medium large), width (narrow wide), texture (plain patterned)
  np.testing.assert_array_equal(named, [[0, -1, 1, -1], [-1, -1, -1, -1], [-1, 2, -1, 1]])


def test_real_test_images_agree_with_their_own_captions(data):
  test = data.sources["test"]
  ref = sample_quality.reference(test, 200)
  out = sample_quality.text_agreement(ref["image"], ref["label"], ref["caption"], _judges(3), data.spec,
                                      test.thresholds, batch_size=64)
  for name in data.spec.attribute_names:
    assert out[f"{name}_agreement"] == 1.0, name
    assert 0.4 < out[f"{name}_named"] < 1.0, name   # each attribute named with probability 0.7
  assert out["class_agreement"] == pytest.approx(np.mean(ref["label"] == 3))
  assert out["clip_cosine"] == pytest.approx(0.5)


def test_a_sampler_of_train_images_scores_the_floor(data):
  """FID / KID of samples that are the floor's own train images equal the floor's, and both
  equal fid.fid / fid.kid on the same features computed here."""
  train_images = pipeline.split_images(data.sources["train"])
  test_images = pipeline.split_images(data.sources["test"])
  num = 100

  def sample(params, rng, n, condition):
    assert condition is None and n == num
    return train_images[:n]

  report = sample_quality.evaluate(sample, None, data.sources["test"], data.sources["train"], data.spec,
                                   jax.random.PRNGKey(0), _judges(), condition="", num_samples=num,
                                   sample_batch_size=num, batch_size=32, kid_subsets=5, kid_subset_size=50)
  features = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
  want = fid.fid(features(train_images[:num]), features(test_images[:num]))
  assert report["fid_floor"] == pytest.approx(want, rel=1e-6) and report["fid"] == pytest.approx(want, rel=1e-6)
  z = fid.standardizer(features(train_images[:10000]))          # KID on train-standardized features
  want_kid = fid.kid(z(features(train_images[:num])), z(features(test_images[:num])), num_subsets=5, subset_size=50)
  assert report["kid_floor"] == pytest.approx(want_kid[0], rel=1e-6)
  assert report["num_kid_stats"] == min(10000, len(train_images))
  assert (report["kid"], report["kid_std"]) == (report["kid_floor"], report["kid_floor_std"])
  assert report["num_samples"] == report["num_reference"] == report["num_floor"] == num
  assert report["condition"] is None and "class_agreement" not in report
  assert report["sample_speed_includes_compile"] == 1.0 and report["sample_images_per_s"] > 0


@pytest.mark.parametrize("condition", ["label", "caption"])
def test_conditions_are_the_test_splits_own(data, condition):
  """N > M: sample i is drawn from test image i mod M's label or caption, in draws of a
  fixed size (the last draw's surplus dropped); agreement is against that image's label."""
  test = data.sources["test"]
  m, num, seen = len(test), len(test) + 50, []
  ref = sample_quality.reference(test, m)

  def sample(params, rng, n, c):
    assert n == 128
    seen.append(np.asarray(c))
    return np.zeros((n, *data.spec.image_shape), np.uint8)

  report = sample_quality.evaluate(sample, None, test, data.sources["train"], data.spec, jax.random.PRNGKey(0),
                                   _judges(5), condition=condition, num_samples=num, sample_batch_size=128,
                                   batch_size=64, kid_subsets=2, kid_subset_size=20)
  conditions = np.concatenate(seen)[:num]
  rows = np.arange(num) % m
  np.testing.assert_array_equal(conditions, ref["label" if condition == "label" else "caption"][rows])
  assert len(seen) == -(-num // 128) and report["sample_speed_includes_compile"] == 0.0
  assert report["num_reference"] == m and report["num_floor"] == num
  assert report["class_agreement"] == pytest.approx(np.mean(ref["label"][rows] == 5))
  assert report["class_agreement_real"] == pytest.approx(np.mean(ref["label"] == 5))
  if condition == "caption":
    assert report["clip_cosine"] == report["clip_cosine_real"] == pytest.approx(0.5)
    assert all(report[f"{a}_agreement_real"] == 1.0 for a in data.spec.attribute_names)
  else:
    assert "clip_cosine" not in report
  assert "condition" in sample_quality.describe(report) or "conditioned" in sample_quality.describe(report)


def test_reference_conditions_and_kid_statistics_are_set_apart(data):
  """eval.reference_images / condition_images / kid_stats_images: FID against the first M test images,
  samples conditioned on the first C (< M) in turn, agreement's real ceiling on those C, KID standardized
  with the first S train images' statistics."""
  test, train_split = data.sources["test"], data.sources["train"]
  m, c, num, s, seen = 300, 40, 100, 500, []
  ref = sample_quality.reference(test, m)

  def sample(params, rng, n, cond):
    seen.append(np.asarray(cond))
    return pipeline.split_images(train_split)[:n]

  report = sample_quality.evaluate(sample, None, test, train_split, data.spec, jax.random.PRNGKey(0), _judges(2),
                                   condition="label", num_samples=num, sample_batch_size=num, batch_size=64,
                                   kid_subsets=3, kid_subset_size=40, reference_images=m, condition_images=c,
                                   kid_stats_images=s)
  np.testing.assert_array_equal(np.concatenate(seen), ref["label"][:c][np.arange(num) % c])
  assert (report["num_reference"], report["num_conditions"], report["num_kid_stats"]) == (m, c, s)
  assert report["class_agreement_real"] == pytest.approx(np.mean(ref["label"][:c] == 2))
  features = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
  train_images = pipeline.split_images(train_split)
  assert report["fid"] == pytest.approx(fid.fid(features(train_images[:num]), features(ref["image"])), rel=1e-6)
  z = fid.standardizer(features(train_images[:s]))
  want = fid.kid(z(features(train_images[:num])), z(features(ref["image"])), num_subsets=3, subset_size=40)
  assert report["kid"] == pytest.approx(want[0], rel=1e-6)


def test_batched_pads_and_trims():
  x = np.arange(23 * 3, dtype=np.float32).reshape(23, 3)
  out = sample_quality.batched(lambda a: a.sum(-1) * 2, 8)(x)
  np.testing.assert_allclose(out, x.sum(-1) * 2)


def test_sampling_speed_reads_the_clock_it_is_given():
  """draw_samples times each draw on the clock it is given: stand-in clocks that advance 1 and 2
  seconds between readings give 4 images per 1 and per 2 seconds after the compiling draw."""
  def ticking(step):
    count = iter(range(0, 1000 * step, step))
    return lambda: next(count)
  sample = lambda params, rng, b, c: np.zeros((b, 2, 2, 1), np.uint8)
  for step, want in ((1, 4.0), (2, 2.0)):
    images, speed = sample_quality.draw_samples(sample, None, jax.random.PRNGKey(0), 10, 4, now=ticking(step))
    assert images.shape == (10, 2, 2, 1)
    assert speed["sample_images_per_s"] == want


def test_sample_condition():
  assert sample_quality.sample_condition("caption", False) == "caption"
  assert sample_quality.sample_condition("label", False) == "label"
  assert sample_quality.sample_condition("", True) == "label"     # a label mixture sampled by label (DDPM)
  assert sample_quality.sample_condition("", False) == ""


def test_the_loop_asks_for_a_classifier_workdir(tmp_path):
  config = load_config("independent")
  config.eval.sample_quality = True
  with pytest.raises(GenfamError, match="eval.classifier_workdir") as e:
    train.train_and_evaluate(config, str(tmp_path))
  assert "\n" not in str(e.value) and "configs/classifier.py" in str(e.value)
