"""The conditional GAN family (`genfam.families.gan`, `genfam.nets.gan_nets`).

Shapes at 28x28x1, 32x32x3 and 8x8x1 without padding; the GAN-CLS
discriminator loss as its three pairs with weights 1, 1/2, 1/2 on known
logits; mismatched labels are never the true ones; GAN-INT's interpolated
conditions never change the discriminator's step; evaluation and sampling use
the EMA generator; the mode-collapse alert fires on identical samples; the
caption variant runs with a stand-in text encoder; the AIS report's parts add up.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data.spec import DatasetSpec
from genfam.errors import GenfamError
from genfam.families import gan
from genfam.nets.gan_nets import Discriminator, Generator
from tests.conftest import load_config

DIGITS = DatasetSpec("digits", (8, 8, 1), 17, tuple(f"digit {k}" for k in range(10)))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1)])
def test_generator_and_discriminator_shapes(shape):
  g, d = Generator(shape, 4, 2, 8), Discriminator(shape, 4, 2, 8)
  z, c = jnp.zeros((3, 5)), jnp.ones((3, 10))

  @jax.jit   # one program (eagerly, each layer's ops would compile one by one)
  def generate_and_discriminate():
    g_params = g.init(jax.random.key(0), z, c)
    out = g.apply(g_params, jax.random.normal(jax.random.key(1), (3, 5)), c)
    d_params = d.init(jax.random.key(2), out, c)
    return out, d.apply(d_params, out, c)

  out, logits = generate_and_discriminate()
  assert out.shape == (3,) + shape and float(out.min()) > 0 and float(out.max()) < 1
  assert logits.shape == (3,)


def test_levels_that_need_padding_are_refused():
  config = load_config("gan")
  config.model.num_levels = 3
  spec = DatasetSpec("fashion_mnist", (28, 28, 1), 256, tuple(str(k) for k in range(10)))
  with pytest.raises(GenfamError, match=r"28x28 do not halve 3 times.*num_levels between 1 and 2"):
    gan.build(config, spec)


def test_discriminator_loss_is_three_pairs_weighted_one_half_half():
  real, wrong, fake = jnp.array([0.0, 2.0]), jnp.array([10.0, 10.0]), jnp.array([-3.0, -3.0])
  loss, parts = gan.discriminator_loss(real, wrong, fake)
  sp = lambda v: math.log1p(math.exp(v))
  want_real = 0.5 * (sp(0.0) + sp(-2.0))                 # softplus(-s): target real
  want_wrong, want_fake = sp(10.0), sp(-3.0)              # softplus(s): target fake
  np.testing.assert_allclose(loss, want_real + 0.5 * want_wrong + 0.5 * want_fake, rtol=1e-6)
  np.testing.assert_allclose(parts["d_loss_wrong"], want_wrong, rtol=1e-6)
  assert float(parts["d_acc_real"]) == 0.5 and float(parts["d_acc_wrong"]) == 0.0
  assert float(parts["d_acc_fake"]) == 1.0
  # all logits 0: log 2 + (log 2 + log 2) / 2 = 2 log 2
  zero = jnp.zeros(4)
  np.testing.assert_allclose(gan.discriminator_loss(zero, zero, zero)[0], 2 * math.log(2), rtol=1e-6)


def test_wrong_labels_are_never_right():
  label = jnp.arange(1000) % 10
  wrong = gan.wrong_labels(jax.random.key(0), label, 10)
  assert bool(jnp.all(wrong != label)) and set(np.asarray(wrong).tolist()) == set(range(10))


def test_interpolated_conditions_are_halfway():
  c = jnp.eye(3)
  np.testing.assert_allclose(gan.interpolate_conditions(c), 0.5 * c + 0.5 * jnp.roll(c, 1, axis=0))


def _family(variant="smoke", **model):
  """configs/gan.py:<variant> with one level (at 8 x 8; the two-level nets' shapes are the test above's),
  and `model` keys."""
  config = load_config("gan", variant)
  config.model.num_levels = 1
  for key, value in model.items():
    config.model[key] = value
  return config, gan.make_family(config, DIGITS, encode_text=_stand_in_text_encoder)


def _stand_in_text_encoder(tokens):  # int32 [B, L] -> [B, 6]: a fixed random embedding, mean over words
  table = jax.random.normal(jax.random.key(42), (DIGITS.vocab_size, 6))
  mask = (tokens > 0)[..., None]
  return jnp.sum(table[tokens] * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1)


def _batch(b=8, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 17, (b, 8, 8, 1)).astype(np.uint8), "label": np.arange(b, dtype=np.int32) % 10,
          "caption": rng.integers(2, DIGITS.vocab_size, (b, DIGITS.caption_length)).astype(np.int32)}


@pytest.fixture(scope="module")
def smoke():
  """The label smoke family, its jitted update (compiled once for the tests below) and a batch."""
  config, family = _family()
  batch = _batch()
  return config, family, jax.jit(family.update), batch, jax.jit(family.init)(jax.random.key(0), batch)


def test_gan_int_never_reaches_the_discriminator(smoke):
  """The same step with and without GAN-INT: identical D update, different G update.
  Also: the metrics, and 'loss' = d_loss + g_loss."""
  _, with_int, update, batch, state = smoke
  _, without = _family(gan_int=False)
  a, metrics = update(state, batch, jax.random.key(1))
  b, metrics_b = jax.jit(without.update)(state, batch, jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, a.d_params, b.d_params)
  np.testing.assert_array_equal(metrics["d_loss"], metrics_b["d_loss"])
  assert "g_loss_int" in metrics and "g_loss_int" not in metrics_b
  diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a.g_params, b.g_params))
  assert max(diffs) > 0
  for key in ("d_loss_real", "d_loss_wrong", "d_loss_fake", "d_acc_real", "d_acc_wrong", "d_acc_fake",
              "g_loss", "r1", "sample_diversity", "alert_mode_collapse"):
    assert np.isfinite(float(metrics[key])), key
  np.testing.assert_allclose(metrics["loss"], metrics["d_loss"] + metrics["g_loss"], rtol=1e-6)
  np.testing.assert_allclose(metrics["d_loss_gan"], metrics["d_loss_real"] + 0.5 * (
      metrics["d_loss_wrong"] + metrics["d_loss_fake"]), rtol=1e-6)
  assert int(a.step) == 1 and float(metrics["alert_mode_collapse"]) == 0.0


def test_mode_collapse_alert_fires_on_identical_samples(smoke):
  """A generator whose last conv kernel is zero outputs sigmoid(bias) for every z: diversity 0."""
  _, family, update, batch, state = smoke
  g = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.zeros_like(x) if "kernel" in jax.tree_util.keystr(path) and x.shape[-1] == 1 else x,
      state.g_params)
  state = state.replace(g_params=g)
  _, metrics = update(state, batch, jax.random.key(1))
  assert float(metrics["sample_diversity"]) < 1e-6 and float(metrics["alert_mode_collapse"]) == 1.0
  np.testing.assert_allclose(gan.sample_diversity(jnp.ones((4, 3)), jnp.ones((4, 3)), jnp.eye(4)[:, :3]), 0.0)


def test_sampling_uses_the_ema_generator(smoke):
  config, family, _, batch, state = smoke
  model = gan.build(config, DIGITS)
  ema = jax.tree.map(lambda x: x + 0.5, state.g_params)        # an EMA far from the raw weights
  state = state.replace(g_ema=ema)
  params = family.eval_params(state)
  labels = jnp.arange(6) % 10
  samples = family.sample(params, jax.random.key(3), 6, labels)
  z = config.sample.temperature * jax.random.normal(jax.random.key(3), (6, model.latent_dim))
  c = jax.nn.one_hot(labels, 10)
  generate = jax.jit(lambda g: gan.to_pixels(model.generator.apply({"params": g}, z, c), 17))   # one program, twice
  np.testing.assert_array_equal(samples, generate(ema))
  raw = generate(state.g_params)
  assert samples.dtype == jnp.uint8 and samples.shape == (6, 8, 8, 1) and not np.array_equal(samples, raw)


def test_ais_report_parts_add_up_and_state_the_schedule(smoke):
  config, family, _, batch, state = smoke
  batch = {k: v[:4] for k, v in batch.items()}
  out = jax.jit(family.log_likelihood)(family.eval_params(state), batch, jax.random.key(1))
  assert family.likelihood_kind == "ais" and family.likelihood_condition == "label"
  np.testing.assert_allclose(out["bpd"], out["density_bpd"] + out["discretization_bpd"], rtol=1e-6)
  np.testing.assert_allclose(out["discretization_bpd"], math.log2(17), rtol=1e-6)
  np.testing.assert_allclose(out["sigma2"], config.eval.ais_sigma2, rtol=1e-6)
  assert float(out["ais_steps"][0]) == config.eval.ais_steps and float(out["ais_chains"][0]) == config.eval.ais_chains
  assert np.all(np.isfinite(out["bpd"]))


def test_caption_variant_with_a_stand_in_encoder():
  config, family = _family("caption_smoke")
  assert family.likelihood_condition == "caption"
  batch = _batch()
  state = jax.jit(family.init)(jax.random.key(0), batch)
  state, metrics = jax.jit(family.update)(state, batch, jax.random.key(1))
  assert np.isfinite(float(metrics["loss"]))
  params = family.eval_params(state)
  from_tokens = family.sample(params, jax.random.key(2), 3, batch["caption"][:3])
  from_labels = family.sample(params, jax.random.key(2), 3, np.array([0, 1, 2]))
  assert from_tokens.shape == from_labels.shape == (3, 8, 8, 1)
  # jitted as the evaluation runs it (eagerly, AIS's HMC would compile each of its ops on its own)
  out = jax.jit(family.log_likelihood)(params, {k: v[:2] for k, v in batch.items()}, jax.random.key(3))
  assert np.all(np.isfinite(out["bpd"]))
  with pytest.raises(GenfamError, match="no 'caption'"):
    family.update(state, {"image": batch["image"], "label": batch["label"]}, jax.random.key(1))


def test_caption_tokens_are_refused_by_the_label_model(smoke):
  _, family, _, batch, state = smoke
  with pytest.raises(GenfamError, match="label-conditioned GAN"):
    family.sample(family.eval_params(state), jax.random.key(0), 3, batch["caption"][:3])
