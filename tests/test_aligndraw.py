"""AlignDRAW (genfam/nets/draw.py, genfam/families/aligndraw.py): DRAW's filterbank attention on
known answers, the alignment over the caption's words (padding ignored), the ELBO's KL against
Monte Carlo, and the ELBO and IWAE against log p(x | caption) computed by quadrature on a model
with T = 1 and a one-dimensional latent; the family's contract for captions and labels; the smoke
config trained, evaluated and sampled for a sentence end to end (slow)."""
import functools
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import registry
from genfam.data import sources
from genfam.errors import GenfamError
from genfam.families import aligndraw
from genfam.families.vae import diag_gaussian_log_prob
from genfam.nets import draw
from genfam.nets.vae_nets import PixelDecoder
from tests.conftest import load_config


def _window(centre_y, centre_x, stride, variance, height, width, n, gamma=1.0):
  """A Window of one image from plain numbers (pixel coordinates)."""
  f = lambda c, size: draw.filterbank(jnp.array([c]), jnp.array([stride]), jnp.array([variance]), size, n)  # noqa: E731
  return draw.Window(f(centre_y, height), f(centre_x, width), jnp.array([gamma]))


class AttentionTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_a_fine_grid_with_tiny_variance_reads_the_image(self):
    """N = H = W, the centre at the image's centre, stride 1, variance 1e-4: F = I, read(x) = x;
    the same window from DRAW's raw outputs (0, 0, log 1e-4, 0, 0)."""
    image = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 6, 2)), jnp.float32)
    window = _window(2.5, 2.5, 1.0, 1e-4, 6, 6, 6)
    np.testing.assert_allclose(window.rows[0], np.eye(6), atol=1e-6)
    np.testing.assert_allclose(self.variant(draw.read)(image, window), image, atol=1e-6)
    raw = jnp.array([[0.0, 0.0, np.log(1e-4), 0.0, 0.0]])
    from_raw = draw.attention_window(raw, 6, 6, 6)
    np.testing.assert_allclose(self.variant(draw.read)(image, from_raw), image, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_a_small_grid_reads_its_patch(self):
    """N = 2, stride 1, centre (2.5, 1.5) on a 5 x 4 image: the filters sit on rows 2, 3 and
    columns 1, 2, so read(x) = gamma x[2:4, 1:3]."""
    image = jnp.asarray(np.random.default_rng(1).normal(size=(1, 5, 4, 3)), jnp.float32)
    window = _window(2.5, 1.5, 1.0, 1e-4, 5, 4, 2, gamma=2.0)
    np.testing.assert_allclose(self.variant(draw.read)(image, window), 2.0 * image[:, 2:4, 1:3], atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_write_inverts_read_on_the_identity_grid_and_keeps_shapes(self):
    image = jnp.asarray(np.random.default_rng(2).normal(size=(1, 4, 4, 1)), jnp.float32)
    window = _window(1.5, 1.5, 1.0, 1e-4, 4, 4, 4, gamma=3.0)
    np.testing.assert_allclose(self.variant(lambda x, w: draw.write(draw.read(x, w), w))(image, window), image,
                               atol=1e-5)
    raw = jnp.asarray(0.3 * np.random.default_rng(3).normal(size=(3, 5)), jnp.float32)   # filters on the image
    window = draw.attention_window(raw, 7, 9, 3)
    chex.assert_shape((window.rows, window.columns, window.gamma), [(3, 3, 7), (3, 3, 9), (3,)])
    np.testing.assert_allclose(jnp.sum(window.rows, -1), 1.0, rtol=1e-5)    # each sums to one over the pixels
    chex.assert_shape(self.variant(draw.read)(jnp.ones((3, 7, 9, 2)), window), (3, 3, 3, 2))
    chex.assert_shape(self.variant(draw.write)(jnp.ones((3, 3, 3, 5)), window), (3, 7, 9, 5))

  @chex.variants(with_jit=True, without_jit=True)
  def test_alignment_weights_sum_to_one_over_the_real_words(self):
    scores = jnp.asarray(np.random.default_rng(4).normal(size=(3, 5)), jnp.float32)
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    weights = self.variant(draw.alignment_weights)(scores, mask)
    np.testing.assert_allclose(jnp.sum(weights, -1), [1.0, 1.0, 0.0], rtol=1e-6)
    assert np.all(np.asarray(weights)[~np.asarray(mask)] == 0.0)
    np.testing.assert_allclose(weights[0, :3], jax.nn.softmax(scores[0, :3]), rtol=1e-6)


# A model small enough to check against brute force: 3 x 4 pixels of K = 5 grey levels.
NUM_BINS, SHAPE, VOCAB = 5, (3, 4, 1), 7


@functools.lru_cache(maxsize=None)
def _tiny_float32():
  pixels = PixelDecoder("logistic", NUM_BINS)
  model = draw.AlignDRAW(SHAPE, pixels.params_per_pixel, "logistic", 1, VOCAB, latent_dim=1, encoder_hidden=6,
                         generator_hidden=6, read_size=2, write_size=2, caption_embed=4, caption_hidden=3,
                         align_features=5)
  key = jax.random.PRNGKey(0)
  params = jax.jit(model.init)(key, jnp.zeros((1, *SHAPE)), jnp.ones((1, 4), jnp.int32))["params"]
  leaves, tree = jax.tree.flatten(params)
  noise = jax.random.normal(key, (sum(p.size for p in leaves),))
  offsets = np.cumsum([0] + [p.size for p in leaves])
  perturbed = [p + 0.3 * noise[a:b].reshape(p.shape) for p, a, b in zip(leaves, offsets[:-1], offsets[1:])]
  return model, pixels, jax.tree.unflatten(tree, perturbed)


def _tiny(dtype=jnp.float32):
  """(model, pixels, params): a tiny AlignDRAW (Z = 1, a discretized-logistic decoder) with its
  parameters perturbed (so the prior depends on h^gen and nothing is zero), in `dtype`; built
  once (compiling an init takes seconds) and cast."""
  model, pixels, params = _tiny_float32()
  return model.clone(param_dtype=dtype), pixels, jax.tree.map(lambda p: p.astype(dtype), params)


def _batch(num=2, length=6):
  rng = np.random.default_rng(5)
  tokens = np.zeros((num, length), np.int32)
  tokens[:, :3] = rng.integers(2, VOCAB, (num, 3))
  return {"image": rng.integers(0, NUM_BINS, (num, *SHAPE)).astype(np.uint8), "caption": tokens}


def _elbo(model, pixels, steps, params, batch, rng):
  decoder, kl = aligndraw.elbo_parts(model, pixels, steps, params, batch, rng)
  return decoder + jnp.sum(kl, -1)                                                  # [B] nats


def test_padding_changes_nothing_and_real_words_do():
  """The padding token's embedding, extra padding, and the alignment's weights: padding words
  change neither the context nor the ELBO; a real word does."""
  model, pixels, params = _tiny()
  batch, rng = _batch(), jax.random.PRNGKey(1)
  elbo = jax.jit(lambda p, b: _elbo(model, pixels, 2, p, b, rng))
  base = elbo(params, batch)
  moved = jax.tree.map(lambda p: p, params)
  moved["embed"]["embedding"] = params["embed"]["embedding"].at[draw.PAD_ID].add(5.0)
  np.testing.assert_allclose(elbo(moved, batch), base, rtol=1e-6)
  longer = dict(batch, caption=np.pad(batch["caption"], ((0, 0), (0, 5))))
  np.testing.assert_allclose(elbo(params, longer), base, rtol=1e-6)
  other = dict(batch, caption=batch["caption"].copy())
  other["caption"][:, 1] = 2 + (batch["caption"][:, 1] - 1) % (VOCAB - 2)          # another real word
  assert not np.allclose(elbo(params, other), base, rtol=1e-6)

  @jax.jit   # one program (eagerly, each op would compile on its own)
  def alignment(params, tokens):
    caption = model.apply({"params": params}, tokens, method=draw.AlignDRAW.encode_caption)
    h_gen = jax.random.normal(jax.random.PRNGKey(2), (2, 6))   # [B, generator_hidden]
    return model.apply({"params": params}, h_gen, caption, method=draw.AlignDRAW.align)[1]

  alpha = alignment(params, jnp.asarray(batch["caption"]))
  np.testing.assert_allclose(jnp.sum(alpha, -1), 1.0, rtol=1e-6)
  assert np.all(np.asarray(alpha)[:, 3:] == 0.0) and np.all(np.asarray(alpha)[:, :3] > 0.0)


def test_the_kl_term_equals_monte_carlo_of_log_q_minus_log_p():
  """Along each of S paths z_1:T ~ q, sum_t KL_t (closed form given z_<t) and sum_t log q(z_t) -
  log p(z_t) have the same expectation (the sequential KL); float64, S = 20000, T = 3."""
  with jax.enable_x64(True):
    steps, num = 3, 20000
    model, pixels, params = _tiny(jnp.float64)
    batch = _batch(num=1)
    x = aligndraw.bin_centres(jnp.asarray(batch["image"]), NUM_BINS, jnp.float64)
    eps = jax.random.normal(jax.random.PRNGKey(3), (steps, num, 1), jnp.float64)

    @jax.jit
    def terms(eps):
      tile = lambda a: jnp.repeat(a, num, axis=0)  # noqa: E731
      _, (qm, qs, pm, ps) = draw.infer(model, params, tile(x), tile(jnp.asarray(batch["caption"])), eps)
      z = qm + jnp.exp(qs) * eps
      closed = jnp.sum(aligndraw.gaussian_kl(qm, qs, pm, ps), axis=(0, 2))                       # [S]
      sampled = jnp.sum(diag_gaussian_log_prob(z, qm, qs) - diag_gaussian_log_prob(z, pm, ps), axis=0)
      return closed, sampled

    closed, sampled = map(np.asarray, terms(eps))
    difference = sampled - closed
    assert abs(difference.mean()) < 4 * difference.std() / np.sqrt(num)
    np.testing.assert_allclose(sampled.mean(), closed.mean(), rtol=0.02)
    assert closed.mean() > 0.05                                       # a KL large enough to be checked


def test_the_elbo_and_iwae_bound_log_p_computed_by_quadrature():
  """T = 1, Z = 1: log p(x | y) = log int N(e) p(x | c(z = mu_p + s_p e)) de and the expected ELBO
  = int N(e) log p(x | c(z = mu_q + s_q e)) de - KL, both by the trapezoid rule on [-12, 12]
  (float64). The ELBO lies strictly below log p(x | y); the family's one-path ELBO averages to the
  quadrature's; IWAE-16 averages between the two."""
  with jax.enable_x64(True):
    model, pixels, params = _tiny(jnp.float64)
    batch = _batch(num=1)
    x = jnp.asarray(batch["image"], jnp.int32)
    xc = aligndraw.bin_centres(x, NUM_BINS, jnp.float64)
    tokens = jnp.asarray(batch["caption"])
    grid = np.linspace(-12.0, 12.0, 4001)
    log_weight = -0.5 * grid ** 2 - 0.5 * np.log(2 * np.pi) + np.log(grid[1] - grid[0])
    log_weight[[0, -1]] += np.log(0.5)                                  # trapezoid end points
    e = jnp.asarray(grid).reshape(1, -1, 1)                             # [T, G, Z]
    tile = lambda a: jnp.repeat(a, grid.size, axis=0)  # noqa: E731

    draws = 4000
    many = {k: np.repeat(v, draws, axis=0) for k, v in batch.items()}
    iwae = aligndraw.iwae_fn(model, pixels, 1, 1, 16, 4)

    @jax.jit   # one program: the quadratures, the family's one-path ELBO and IWAE-16
    def quadrature_and_bounds(e):
      log_px_prior = pixels.log_prob(tile(x), draw.generate(model, params, tile(tokens), e))
      log_p = jax.nn.logsumexp(log_px_prior + log_weight)
      canvas, (qm, qs, pm, ps) = draw.infer(model, params, tile(xc), tile(tokens), e)
      log_px_post = pixels.log_prob(tile(x), canvas)
      kl = aligndraw.gaussian_kl(qm[0, 0], qs[0, 0], pm[0, 0], ps[0, 0])[0]
      expected_elbo = jnp.sum(jnp.exp(log_weight) * log_px_post) - kl
      elbo = _elbo(model, pixels, 1, params, many, jax.random.PRNGKey(4))
      iwae_bpd = iwae(params, {k: v[:500] for k, v in many.items()}, jax.random.PRNGKey(5))["bpd"]
      return log_p, expected_elbo, elbo, iwae_bpd

    log_p, expected_elbo, elbo, iwae_bpd = quadrature_and_bounds(e)
    assert float(log_p - expected_elbo) > 1e-3                          # a real gap, not rounding

    elbo = -np.asarray(elbo)
    assert abs(elbo.mean() - float(expected_elbo)) < 4 * elbo.std() / np.sqrt(draws)
    iwae_bound = -np.asarray(iwae_bpd) * np.log(2)                      # nats (D = 1)
    stderr = 4 * iwae_bound.std() / np.sqrt(iwae_bound.size)
    assert float(expected_elbo) - stderr < iwae_bound.mean() < float(log_p) + stderr
    assert iwae_bound.mean() > elbo.mean()


# The smoke config through the registry: traced shapes only (jax.eval_shape), as
# tests/test_family_contract.py does, with the caption and label conditions it leaves out.


def _family():
  config = load_config("aligndraw")
  spec = sources.dataset_spec(config.data.name)
  return config, spec, registry.make_family(config, spec)


def test_the_family_is_caption_conditional_and_samples_captions_labels_and_nothing():
  config, spec, family = _family()
  assert family.likelihood_kind == "elbo" and family.likelihood_condition == "caption"
  assert set(family.extra_likelihoods) == {f"iwae-{config.eval.iwae_k}"}
  shape = jax.ShapeDtypeStruct
  batch = {"image": shape((4, *spec.image_shape), jnp.uint8), "caption": shape((4, spec.caption_length), jnp.int32)}
  state = jax.eval_shape(family.init, shape((2,), jnp.uint32), batch)
  params = jax.eval_shape(family.eval_params, state)
  parts = jax.eval_shape(family.log_likelihood, params, batch, shape((2,), jnp.uint32))
  assert set(parts) == {"bpd", "decoder_bpd", "kl_bpd"} and all(p.shape == (4,) for p in parts.values())
  for condition in (None, np.ones((3, spec.caption_length), np.int32), np.arange(3, dtype=np.int32)):
    images = jax.eval_shape(lambda p: family.sample(p, jax.random.PRNGKey(0), 3, condition), params)  # noqa: B023
    assert images.shape == (3, *spec.image_shape) and images.dtype == jnp.uint8


@pytest.mark.parametrize("key, value, match", [("decoder", "bernoulli", "unknown config.model.decoder"),
                                               ("steps", 0, "config.model.steps must be a positive integer")])
def test_bad_model_keys_are_one_line_errors(key, value, match):
  config = load_config("aligndraw")
  config.model[key] = value
  with pytest.raises(GenfamError, match=match):
    registry.make_family(config, sources.dataset_spec(config.data.name))


@pytest.mark.slow
def test_smoke_trains_evaluates_and_samples_a_sentence(tmp_path):
  from genfam.loop import train
  config = load_config("aligndraw")
  config.train.progress = False
  summary = train.train_and_evaluate(config, str(tmp_path))
  report = summary["test"]["elbo"]
  assert report["conditional_on"] == "caption" and np.isfinite(report["bpd"])
  np.testing.assert_allclose(report["decoder_bpd"] + report["kl_bpd"], report["bpd"], rtol=1e-5)
  assert np.isfinite(summary["test"][f"iwae-{config.eval.iwae_k}"]["bpd"])
  grid = train.sample_workdir(config, str(tmp_path), "sentence.png", caption="a photo of a dark digit 7")
  assert grid == os.path.join(str(tmp_path), "sentence.png") and os.path.getsize(grid) > 0
