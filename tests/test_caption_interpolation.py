"""Caption interpolation (experiments/studies/caption_interpolation.py) for the caption GAN and caption diffusion.

The path's ends are the two embeddings, linear's midpoint is their mean and slerp stays on the unit
sphere; the grid's first and last columns are exactly the family's own samples for the two sentences
(the family built with the real encoder, the same key), and a GAN row keeps one z (every column of a
row equals G(z_r, e_j) for one z_r) (slow: the samplers compile). Stand-in text encoders; no trained model.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.studies import caption_interpolation as ci
from genfam import registry
from genfam.data import captions, sources
from genfam.errors import GenfamError
from genfam.families import gan
from tests.conftest import load_config

DIGITS = sources.dataset_spec("digits")
A, B = "a small dark digit 3", "a large light digit 8"


def _encoder(tokens):  # int32 [N, L] -> [N, 6] unit norm: a fixed random table, mean over words
  table = jax.random.normal(jax.random.PRNGKey(42), (DIGITS.vocab_size, 6))
  mask = (tokens > 0)[..., None]
  e = jnp.sum(table[tokens] * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1)
  return e / jnp.linalg.norm(e, axis=-1, keepdims=True)


def _tokens(sentence, rows):
  return np.tile(captions.encode_sentence(sentence, DIGITS)[None], (rows, 1))


def test_paths_start_and_end_at_the_sentences():
  e_a, e_b = _encoder(_tokens(A, 1))[0], _encoder(_tokens(B, 1))[0]
  for path in ci.PATHS:
    table = ci.embedding_path(e_a, e_b, 5, path)
    np.testing.assert_allclose(table[0], e_a, atol=1e-6)
    np.testing.assert_allclose(table[-1], e_b, atol=1e-6)
  np.testing.assert_allclose(ci.embedding_path(e_a, e_b, 3, "linear")[1], (e_a + e_b) / 2, atol=1e-6)
  np.testing.assert_allclose(jnp.linalg.norm(ci.embedding_path(e_a, e_b, 7, "slerp"), axis=1), 1.0, atol=1e-5)
  with pytest.raises(GenfamError, match="unknown --path"):
    ci.embedding_path(e_a, e_b, 3, "cubic")


@pytest.mark.slow   # compiles each family's sampler (the diffusion smoke model's: minutes on a busy 2-core machine)
@pytest.mark.parametrize("name", ["gan", "ddpm"])
def test_the_grid_ends_are_the_familys_own_samples_of_the_two_sentences(name):
  config = load_config(name, "caption_smoke")
  family = registry.make_family(config, DIGITS, encode_text=_encoder)
  batch = {"image": np.zeros((4, 8, 8, 1), np.uint8), "label": np.zeros(4, np.int32), "caption": _tokens(A, 4)}
  params = family.eval_params(family.init(jax.random.PRNGKey(0), batch))
  rng, rows, cols = jax.random.PRNGKey(5), 3, 4
  e_a, e_b = _encoder(_tokens(A, 1))[0], _encoder(_tokens(B, 1))[0]
  grid = ci.interpolation_grid(config, DIGITS, params, {"encode_text": _encoder}, e_a, e_b, rng, rows, cols)
  grid = grid.reshape(rows, cols, *grid.shape[1:])
  np.testing.assert_array_equal(grid[:, 0], family.sample(params, rng, rows, _tokens(A, rows)))
  np.testing.assert_array_equal(grid[:, -1], family.sample(params, rng, rows, _tokens(B, rows)))
  if name == "gan":   # one z per row: column j is G(z_r, e_j)
    z = gan.latent_noise(rng, rows, config.model.latent_dim)
    table = ci.embedding_path(e_a, e_b, cols)
    for j in range(cols):
      want = gan.to_pixels(family.exports["generate"](params, z, jnp.tile(table[j][None], (rows, 1))), 17)
      np.testing.assert_array_equal(grid[:, j], want)


def test_a_model_without_a_caption_embedding_is_refused():
  with pytest.raises(GenfamError, match="not conditioned on a caption embedding"):
    ci.interpolation_grid(load_config("gan"), DIGITS, None, {}, jnp.ones(6), jnp.ones(6), jax.random.PRNGKey(0), 2, 3)
