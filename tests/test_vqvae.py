"""The VQ-VAE (stage 1 of DALL-E's recipe, genfam/families/two_stage/discrete_autoencoder.py).

Fast: nearest codes against brute force, the ELBO under a uniform prior and its parts, the
exports the code prior calls, the straight-through gradient, the codebook's data-dependent
start, training lowering the loss, bad input. Slow: the smoke config trained end to end through
the loop, evaluated and sampled.
"""
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import registry
from genfam.data.spec import DatasetSpec
from genfam.errors import GenfamError
from genfam.families.two_stage import discrete_autoencoder as vq
from genfam.loop import frozen, train
from tests.conftest import load_config

SPEC = DatasetSpec(name="toy", image_shape=(8, 8, 1), num_bins=17, class_names=("a", "b"))


def _config(**model):
  c = load_config("vqvae")
  c.data.name = SPEC.name
  for k, v in model.items():
    c.model[k] = v
  return c


def _batch(num, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, SPEC.num_bins, (num, *SPEC.image_shape)).astype(np.uint8),
          "label": np.zeros((num,), np.int32)}


FAMILY = {}


def _family():
  """(family, state) of the smoke-sized VQ-VAE (4x4 grid of 16 codes of dimension 4) on SPEC."""
  if not FAMILY:
    family = registry.make_family(_config(), SPEC)
    FAMILY["f"] = family, jax.jit(family.init)(jax.random.PRNGKey(0), _batch(16))
  return FAMILY["f"]


class NearestCodesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_nearest_codes_are_the_brute_force_argmin(self):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 2, 5, 4)).astype(np.float32)
    codebook = rng.normal(size=(7, 4)).astype(np.float32)
    codes = self.variant(vq.nearest_codes)(z, codebook)
    distances = ((z[..., None, :] - codebook) ** 2).sum(-1)                      # [3, 2, 5, 7]
    chex.assert_type(codes, jnp.int32)
    np.testing.assert_array_equal(codes, distances.argmin(-1))


class BoundTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_elbo_is_decoder_nll_plus_uniform_prior(self):
    """bpd = recon_bpd + h w log2 N / D, recon_bpd = decoder_nll_bits(x, encode(x)), deterministic."""
    family, state = _family()
    params = family.eval_params(state)
    batch = _batch(5, seed=1)
    report = self.variant(family.log_likelihood)(params, batch, jax.random.PRNGKey(0))
    again = self.variant(family.log_likelihood)(params, batch, jax.random.PRNGKey(1))
    chex.assert_shape([report["bpd"], report["recon_bpd"], report["prior_bpd"]], (5,))
    np.testing.assert_allclose(report["prior_bpd"], 4 * 4 * math.log2(16) / 64, rtol=1e-6)
    np.testing.assert_allclose(report["bpd"], report["recon_bpd"] + report["prior_bpd"], rtol=1e-6)
    codes = jax.jit(family.exports["encode"])(params, batch["image"])
    recon = self.variant(family.exports["decoder_nll_bits"])(params, batch["image"], codes)
    np.testing.assert_allclose(report["recon_bpd"], recon, rtol=1e-6)
    np.testing.assert_array_equal(report["bpd"], again["bpd"])                # no sampling in the bound
    assert family.likelihood_kind == "elbo" and "upper bound" in family.likelihood_note

  def test_decoder_is_a_distribution_over_the_grey_levels(self):
    """A 1x1 image of K levels: sum_x p(x | z) = 1 for any code (the VAE's pixel decoder)."""
    spec = DatasetSpec(name="toy", image_shape=(1, 1, 1), num_bins=17, class_names=("a",))
    family = registry.make_family(_config(widths=(4,), blocks=(1,)), spec)
    images = np.arange(17, dtype=np.uint8).reshape(17, 1, 1, 1)
    params = family.eval_params(jax.jit(family.init)(jax.random.PRNGKey(0), {"image": images}))
    # the 17 images under each of codes 0, 1, 2 in one call: [3 * 17]
    codes = np.repeat(np.arange(3, dtype=np.int32), 17).reshape(51, 1, 1)
    bits = np.asarray(jax.jit(family.exports["decoder_nll_bits"])(params, np.tile(images, (3, 1, 1, 1)), codes),
                      np.float64)
    for code in range(3):
      np.testing.assert_allclose(np.sum(2.0 ** -bits[17 * code:17 * (code + 1)]), 1.0, rtol=1e-5)


def test_exports_shapes_and_ranges():
  family, state = _family()
  params = family.eval_params(state)
  batch = _batch(3)
  codes = jax.jit(family.exports["encode"])(params, batch["image"])
  assert codes.shape == (3, 4, 4) and codes.dtype == jnp.int32 and 0 <= int(codes.min()) <= int(codes.max()) < 16
  drawn = jax.jit(family.exports["decode"])(params, codes, jax.random.PRNGKey(0))
  decode = jax.jit(family.exports["decode"], static_argnums=3)
  modes = [decode(params, codes, jax.random.PRNGKey(k), "mode") for k in range(2)]
  assert drawn.shape == (3, 8, 8, 1) and drawn.dtype == jnp.uint8 and int(drawn.max()) < SPEC.num_bins
  np.testing.assert_array_equal(modes[0], modes[1])                          # the mode needs no key
  samples = family.sample(params, jax.random.PRNGKey(0), 4)
  assert samples.shape == (4, 8, 8, 1) and samples.dtype == jnp.uint8


def test_codebook_starts_at_the_first_batch_encoder_outputs():
  """Every code vector starts within its 1% noise of an encoder output of the init batch."""
  family, state = _family()
  model, _ = vq.build(_config(), SPEC)
  params = state.params
  xc = jnp.asarray(_batch(16)["image"], jnp.float32) * (2.0 / 16) - 1.0
  z_e = jax.jit(lambda p, x: model.apply({"params": p}, x, method=vq.VQVAE.encode))(params, xc).reshape(-1, 4)      # [256, 4]
  gaps = np.sqrt(((np.asarray(params["codebook"])[:, None] - np.asarray(z_e)[None]) ** 2).sum(-1)).min(1)
  assert np.all(gaps < 0.1 * float(jnp.std(z_e)) * 2), gaps


def test_straight_through_gradient_reaches_the_encoder_and_training_lowers_the_loss():
  """The decoder's gradient passes through the quantizer to the encoder; 30 updates on one batch
  lower the loss and the reconstruction term."""
  family, state = _family()
  batch = _batch(16)
  update = jax.jit(family.update)
  first, metrics0 = update(state, batch, jax.random.PRNGKey(0))
  state = first
  for step in range(1, 30):
    state, metrics = update(state, batch, jax.random.PRNGKey(step))
  assert set(metrics) >= {"loss", "recon_bpd", "codebook_loss", "commitment_loss", "code_perplexity", "codes_used"}
  assert float(metrics["loss"]) < float(metrics0["loss"]) and float(metrics["recon_bpd"]) < float(metrics0["recon_bpd"])
  encoder_kernel = lambda s: s.params["encoder"]["Conv_0"]["kernel"]  # noqa: E731
  assert float(jnp.abs(encoder_kernel(state) - encoder_kernel(first)).max()) > 0


def test_bad_input_is_one_line():
  with pytest.raises(GenfamError, match="model.decoder"):
    registry.make_family(_config(decoder="bernoulli"), SPEC)
  with pytest.raises(GenfamError, match="widths"):
    registry.make_family(_config(widths=(4, 8), blocks=(1,)), SPEC)
  with pytest.raises(GenfamError, match="codebook_size"):
    registry.make_family(_config(codebook_size=1), SPEC)
  c = _config()
  c.sample.decode = "mean"
  with pytest.raises(GenfamError, match="sample.decode"):
    registry.make_family(c, SPEC)
  family, state = _family()
  with pytest.raises(GenfamError, match="built for images"):
    family.log_likelihood(family.eval_params(state), {"image": np.zeros((2, 4, 4, 1), np.uint8)}, None)


@pytest.mark.slow
def test_smoke_trains_evaluates_samples_and_is_loaded_as_a_frozen_stage_one(tmp_path):
  config = load_config("vqvae")
  config.train.progress = False
  summary = train.train_and_evaluate(config, str(tmp_path))
  report = summary["test"]["elbo"]
  np.testing.assert_allclose(report["recon_bpd"] + report["prior_bpd"], report["bpd"], rtol=1e-5)
  np.testing.assert_allclose(report["prior_bpd"], 16 * math.log2(16) / 64, rtol=1e-6)
  assert os.path.getsize(tmp_path / "samples.png") > 0
  loaded = frozen.load_frozen(str(tmp_path), "vqvae", dataset="digits")
  assert loaded.step == config.train.num_steps and set(loaded.functions) == {"encode", "decoder_nll_bits", "decode"}
  codes = loaded.functions["encode"](loaded.params, np.zeros((2, 8, 8, 1), np.uint8))
  assert codes.shape == (2, 4, 4)
