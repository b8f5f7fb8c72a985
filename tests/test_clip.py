"""CLIP, small: the InfoNCE loss, recall@k, the padding mask, prompts, and a short
digits run whose recall and zero-shot accuracy clear their chance levels."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import registry
from genfam.data import captions, sources
from genfam.errors import GenfamError
from genfam.families.auxiliary import clip
from genfam.loop import train
from genfam.nets.text_encoder import TextEncoder
from tests.conftest import load_config


@pytest.mark.parametrize("batch", [1, 4, 33])
@pytest.mark.parametrize("scale", [0.5, 14.3, 100.0])
def test_info_nce_of_identical_embeddings_is_log_b(batch, scale):
  e = clip.normalize(jnp.arange(1.0, 9.0))
  same = jnp.tile(e, (batch, 1))                                   # [B, E], all rows equal
  np.testing.assert_allclose(clip.info_nce(same, same, scale), math.log(batch), rtol=1e-5, atol=1e-6)


def test_info_nce_of_matched_orthogonal_embeddings_falls_to_zero_with_the_temperature():
  batch = 6
  e = jnp.eye(batch, 8)                                            # [B, E] orthonormal, text_i = image_i
  losses = [float(clip.info_nce(e, e, 1.0 / tau)) for tau in (1.0, 0.3, 0.1, 0.03, 0.01)]
  for tau, loss in zip((1.0, 0.3, 0.1, 0.03, 0.01), losses):       # log(1 + (B - 1) e^{-1/tau})
    np.testing.assert_allclose(loss, math.log1p((batch - 1) * math.exp(-1.0 / tau)), rtol=1e-4, atol=1e-7)
  assert all(a >= b for a, b in zip(losses, losses[1:])) and losses[0] > losses[2] > 0  # float32: 0 once < 1e-7
  assert losses[-1] < 1e-6


def test_recall_at_k_known_answers():
  # Query i's right item is i. Query 0: item 0 best (rank 0). Query 1: items 0 and 2 above it (rank 2).
  # Query 2: item 0 ties it (ties count against: rank 1). Row/column 3 is padding: not in the
  # gallery, however high it scores.
  scores = jnp.array([[0.9, 0.1, 0.2, 0.0],
                      [0.8, 0.5, 0.6, 0.9],
                      [0.7, 0.2, 0.7, 0.9],
                      [0.0, 0.0, 0.0, 1.0]])
  mask = jnp.array([True, True, True, False])
  same = jnp.eye(4, dtype=bool)
  for k, expected in ((1, [1, 0, 0]), (2, [1, 0, 1]), (3, [1, 1, 1])):
    hit, chance = clip.recall_at_k(scores, mask, same, k)
    np.testing.assert_array_equal(hit[:3], expected)
    np.testing.assert_allclose(chance[:3], min(1.0, k / 3))      # 2 competitors + the right item
  # Item 2 says the same as item 1 (identical captions): no longer a competitor of query 1.
  same = same.at[1, 2].set(True).at[2, 1].set(True)
  hit, chance = clip.recall_at_k(scores, mask, same, 2)
  np.testing.assert_array_equal(hit[:3], [1, 1, 1])
  np.testing.assert_allclose(chance[:3], [2 / 3, 1.0, 1.0])


def test_text_encoder_masks_padding():
  """A caption padded to L encodes as the same caption cut to its real tokens."""
  model = TextEncoder(vocab_size=20, max_length=8, width=16, num_layers=2, num_heads=2)
  tokens = jnp.array([[5, 6, 7, 0, 0, 0, 0, 0], [3, 9, 0, 0, 0, 0, 0, 0]], jnp.int32)
  params = model.init(jax.random.PRNGKey(0), tokens)
  padded = model.apply(params, tokens)
  np.testing.assert_allclose(padded[0], model.apply(params, tokens[:1, :3])[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(padded[1], model.apply(params, tokens[1:, :2])[0], rtol=1e-5, atol=1e-5)


def test_prompts_use_caption_words_only():
  for name in ("fashion_mnist", "digits", "cifar10"):
    spec = sources.dataset_spec(name)
    sentences = [clip.prompt(spec, c, v) for values in ("",) + tuple(spec.attribute_values)
                 for v in (values if values else ("",)) for c in range(spec.num_classes)]
    tokens = clip.prompt_tokens(spec, sentences)
    assert tokens.shape == (len(sentences), spec.caption_length) and (tokens != 1).all()
  spec = sources.dataset_spec("fashion_mnist")
  assert clip.prompt(spec, 9) == "a photo of an ankle boot"
  assert clip.prompt(spec, 0, "dark") == "a photo of a dark t-shirt"
  with pytest.raises(GenfamError, match="outside the caption vocabulary"):
    clip.prompt_tokens(spec, ["a photo of a giraffe"])


def test_encoders_are_unit_norm_and_exported():
  config = load_config("clip")
  spec = sources.dataset_spec(config.data.name)
  family = registry.make_family(config, spec)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, spec.num_bins, (4, *spec.image_shape)).astype(np.uint8),
           "label": np.arange(4, dtype=np.int32),
           "caption": np.stack([captions.encode_sentence(s, spec) for s in
                                ("a dark digit 1", "a digit 2", "a photo of a wide digit 3", "this digit 4 is plain")]),
           "attributes": np.zeros((4, spec.num_attributes), np.int32)}
  params = family.eval_params(family.init(jax.random.PRNGKey(0), batch))
  text = family.exports["encode_text"](params, batch["caption"])
  image = family.exports["encode_image"](params, batch["image"])
  assert text.shape == image.shape == (4, config.model.embed_dim)
  np.testing.assert_allclose(jnp.linalg.norm(text, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(jnp.linalg.norm(image, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(family.exports["agreement"](params, batch["image"], batch["caption"]),
                             (text * image).sum(-1), rtol=1e-5)
  np.testing.assert_allclose(family.exports["logit_scale"](params), 1 / config.model.init_temperature, rtol=1e-5)
  assert family.sample is None and family.log_likelihood is None


@pytest.mark.slow
def test_short_digits_run_clears_chance(tmp_path):
  """150 steps on digits: every recall and zero-shot class accuracy above its chance level."""
  config = load_config("clip")
  config.train.num_steps = 150
  config.train.eval_every = 0
  config.train.log_every = 50
  config.train.checkpoint_every = 150
  config.optim.learning_rate = 3e-3
  config.eval.num_examples = 0                                    # all 360 test digits
  config.eval.batch_size = 120                                    # 3 galleries of 120
  report = train.train_and_evaluate(config, str(tmp_path))["test"]["metrics"]
  assert report["num_examples"] == 360 and report["gallery_size"] == 120
  for name in ["zero_shot_class_accuracy"] + [f"{d}_recall_at_{k}" for d in ("caption_to_image", "image_to_caption")
                                              for k in (1, 5)]:
    assert report[name] > report[f"{name}_chance"] + 3 * report[f"{name}_stderr"], (name, report)
