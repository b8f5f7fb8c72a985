"""The flow family (genfam.families.flow) through the Family contract, tiny.

Built from the configs' smoke variants on an 8x8x1, 17-bin spec (scikit-learn
digits' shape), without reading any data.
"""
import functools
import math

from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data.spec import DatasetSpec
from genfam.errors import GenfamError
from genfam.families import flow
from genfam.families.flow_models import Glow, RealNVP
from genfam import optim
from tests.conftest import load_config

SPEC = DatasetSpec("digits", (8, 8, 1), 17, tuple(str(i) for i in range(10)))
PARTS = ("prior_bpd", "logdet_bpd", "preprocess_bpd", "discretization_bpd")


def key(seed=0):
  return jax.random.key(seed, impl="rbg")


def example_batch(n=8):
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, 17, (n, 8, 8, 1)).astype(np.uint8),
          "label": rng.integers(0, 10, (n,)).astype(np.int32)}


def smoke(name, **model):
  config = load_config(name, "smoke")
  config.model.update(model)
  return config


# Smaller than the smoke configs (XLA compile time grows with depth): a
# class-conditional one-level, one-step Glow (splits are covered in
# test_flow_models.py), and an unconditional RealNVP
# with one coupling of each kind per scale.
TINY = {"glow": dict(num_levels=1, num_steps=1, width=4, class_conditional=True),
        "realnvp": dict(width=4, num_blocks=0, couplings=(1, 1, 2))}


@functools.lru_cache(maxsize=None)
def family_and_state(name):
  family = flow.make(smoke(name, **TINY[name]), SPEC)
  return family, jax.jit(family.init)(key(), example_batch())


@functools.lru_cache(maxsize=None)
def jitted(name):
  """(log_likelihood, update, sample) of family `name`, jitted once for all tests
  (sample jits itself, as the loop calls it without jit)."""
  family, _ = family_and_state(name)
  return jax.jit(family.log_likelihood), jax.jit(family.update), family.sample


@pytest.mark.parametrize("name", ["glow", "realnvp"])
def test_make_builds_the_configured_model(name):
  family, _ = family_and_state(name)
  assert family.name == "flow" and family.likelihood_kind == "exact"


@pytest.mark.parametrize("name", ["glow", "realnvp"])
def test_parts_add_up_to_bpd_and_updates_are_finite(name):
  family, state = family_and_state(name)
  log_likelihood, update, _ = jitted(name)
  batch = example_batch()
  parts = log_likelihood(family.eval_params(state), batch, key(1))
  assert set(parts) == {"bpd", *PARTS}
  for v in parts.values():
    assert v.shape == (8,) and bool(jnp.all(jnp.isfinite(v)))
  np.testing.assert_allclose(sum(parts[k] for k in PARTS), parts["bpd"], rtol=1e-5)
  np.testing.assert_allclose(parts["discretization_bpd"], math.log2(17), rtol=1e-6)
  new_state = state
  for step in range(2):  # the warm-up makes the first learning rate 0
    new_state, metrics = update(new_state, batch, key(2 + step))
    assert all(bool(jnp.isfinite(v)) for v in metrics.values()), metrics
    assert 0.0 < float(metrics["loss"]) < 50.0
    np.testing.assert_allclose(metrics["loss"], metrics["bpd"], rtol=1e-6)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
  assert any(jax.tree.leaves(changed))
  assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(new_state.params))
  # fixed constants (LU permutations and signs) are model state, never trained
  same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state.model_state, new_state.model_state)
  assert all(jax.tree.leaves(same))


def test_actnorm_is_initialised_on_the_dequantized_batch():
  _, state = family_and_state("glow")
  loc = state.params["after_0_0"]["loc"]  # the first actnorm sees squeeze(x - 0.5)
  batch = example_batch()
  y = (batch["image"].astype(np.float32) + 0.5) / 17 - 0.5  # mean of the dequantized values
  expected = y.reshape(8, 4, 2, 4, 2, 1).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 4).mean(0)
  np.testing.assert_allclose(loc, expected, atol=0.05)


@pytest.mark.parametrize("name", ["glow", "realnvp"])
def test_sample_uint8_in_range_and_deterministic_at_temperature_zero(name):
  family, state = family_and_state(name)
  params = family.eval_params(state)
  sample = jitted(name)[2]
  labels = jnp.arange(4, dtype=jnp.int32)
  images = sample(params, key(3), 4, labels)
  assert images.dtype == jnp.uint8 and images.shape == (4, 8, 8, 1)
  assert int(images.max()) <= 16
  np.testing.assert_array_equal(sample(params, key(4), 4, labels, temperature=0.0),
                                sample(params, key(5), 4, labels, temperature=0.0))


def test_class_conditional_prior_changes_samples_and_likelihood_with_the_label():
  family, state = family_and_state("glow")
  log_likelihood, _, sample = jitted("glow")
  params = family.eval_params(state)
  # A fresh label embedding is zero (the prior starts unconditional); move it.
  top = params["params"]["top_prior"]
  kernel = np.random.default_rng(0).normal(0.0, 0.5, top["from_label"]["kernel"].shape)
  top = dict(top, from_label=dict(top["from_label"], kernel=jnp.asarray(kernel, jnp.float32)))
  params = {**params, "params": {**params["params"], "top_prior": top}}
  zeros = sample(params, key(6), 4, jnp.zeros(4, jnp.int32))
  threes = sample(params, key(6), 4, jnp.full(4, 3, jnp.int32))
  np.testing.assert_array_equal(zeros, sample(params, key(6), 4, jnp.zeros(4, jnp.int32)))
  assert bool(jnp.any(zeros != threes))
  batch = example_batch()
  other = dict(batch, label=(batch["label"] + 1) % 10)
  assert bool(jnp.any(log_likelihood(params, batch, key(7))["bpd"]
                      != log_likelihood(params, other, key(7))["bpd"]))


def test_unconditional_flow_ignores_labels():
  family, state = family_and_state("realnvp")
  params = family.eval_params(state)
  sample = jitted("realnvp")[2]
  np.testing.assert_array_equal(sample(params, key(8), 4, jnp.zeros(4, jnp.int32)),
                                sample(params, key(8), 4, jnp.full(4, 7, jnp.int32)))


def test_eval_params_use_ema_and_carry_the_constants():
  family, state = family_and_state("glow")
  params = family.eval_params(state)
  assert set(params) == {"params", "constants"}
  assert params["params"] is optim.eval_params(state)


class ConfigTest(parameterized.TestCase):

  @parameterized.parameters("glow", "realnvp")
  def test_default_config_builds_at_28x28(self, name):
    config = load_config(name, None)
    spec = DatasetSpec("fashion_mnist", (28, 28, 1), 256, tuple(str(i) for i in range(10)))
    family = flow.make(config, spec)
    batch = {"image": jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.uint8),
             "label": jax.ShapeDtypeStruct((2,), jnp.int32)}
    state = jax.eval_shape(family.init, key(), batch)
    assert jax.tree.leaves(state.params)

  @parameterized.parameters("glow", "realnvp")
  def test_unknown_variant_is_an_error(self, name):
    with self.assertRaisesRegex(ValueError, "unknown variant"):
      load_config(name, "huge")

  def test_kinds(self):
    self.assertIsInstance(flow.build_model(smoke("glow").model, (8, 8, 1)), Glow)
    self.assertIsInstance(flow.build_model(smoke("realnvp").model, (8, 8, 1)), RealNVP)
    with self.assertRaisesRegex(GenfamError, "unknown flow kind"):
      flow.build_model(smoke("glow", kind="maf").model, (8, 8, 1))

  def test_too_many_levels_for_the_image_is_a_clear_error(self):
    with self.assertRaisesRegex(GenfamError, "num_levels=4"):
      flow.make(smoke("glow", num_levels=4), SPEC)

  def test_wrong_image_shape_is_a_clear_error(self):
    family, state = family_and_state("glow")
    batch = {"image": np.zeros((2, 4, 4, 1), np.uint8), "label": np.zeros(2, np.int32)}
    with self.assertRaisesRegex(GenfamError, "check config.data.name"):
      family.log_likelihood(family.eval_params(state), batch, key())
