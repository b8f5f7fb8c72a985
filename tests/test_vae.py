"""The VAE family by hand: init, update, both bounds, sampling, reconstruction,
on digits-shaped batches (8x8x1, 17 bins) with the smoke config's tiny model.

The end-to-end run through the training loop is the lead's e2e test; here the
"trained for a few steps" model is a fixture made by calling `update` directly.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vae as vae_config
from genfam.data.spec import DatasetSpec
from genfam.errors import GenfamError
from genfam.families import vae
from genfam.likelihood.bits import nats_to_bpd
from genfam.nets.vae_nets import VAE, PixelDecoder, level_sizes

SPEC = DatasetSpec("digits", (8, 8, 1), 17, tuple(str(i) for i in range(10)), 1437, 360)
NUM_STEPS = 6


def _config(**model):
  c = vae_config.get_config("smoke")
  for key, value in model.items():
    c.model[key] = value
  return c


def _batch(n=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 17, (n, 8, 8, 1)).astype(np.uint8),  # [n, 8, 8, 1] in 0..16
          "label": rng.integers(0, 10, (n,)).astype(np.int32)}


def _tile(batch, reps):
  return {k: np.concatenate([v] * reps) for k, v in batch.items()}


@pytest.fixture(scope="module")
def trained():
  """(family, state, metrics of every step) after NUM_STEPS updates on one batch."""
  family = vae.make(_config(), SPEC)
  batch = _batch()
  state = family.init(jax.random.key(0), batch)
  update = jax.jit(family.update)
  history = []
  for step in range(NUM_STEPS):
    state, metrics = update(state, batch, jax.random.fold_in(jax.random.key(1), step))
    history.append(jax.device_get(metrics))
  return family, state, history


def test_update_metrics_and_step_counter(trained):
  family, state, history = trained
  assert int(state.model_state["step"]) == NUM_STEPS
  latent_dim = _config().model.latent_dim
  for key in ("loss", "elbo_bpd", "recon_bpd", "kl_bpd", "kl_weight", "active_units",
              "alert_posterior_collapse", "kl_per_dim", "kl_per_latent_mean_nats",
              "kl_per_latent_min_nats", "kl_per_latent_max_nats", "grad_norm"):
    assert key in history[0], key
  assert "collapsed" not in history[0]  # renamed: the loop's alerts are the 'alert_*' metrics
  for metrics in history:
    assert all(np.all(np.isfinite(v)) for v in metrics.values()), metrics
    for key, value in metrics.items():   # scalars, but for the one vector [L]
      assert np.shape(value) == ((latent_dim,) if key == "kl_per_dim" else ()), (key, np.shape(value))
    np.testing.assert_allclose(metrics["elbo_bpd"], metrics["recon_bpd"] + metrics["kl_bpd"], rtol=1e-5)
    kl = metrics["kl_per_dim"]
    assert np.all(kl >= 0)
    np.testing.assert_allclose(nats_to_bpd(kl.sum(), SPEC.num_dims), metrics["kl_bpd"], rtol=1e-5)
    np.testing.assert_allclose([kl.mean(), kl.min(), kl.max()],
                               [metrics[f"kl_per_latent_{s}_nats"] for s in ("mean", "min", "max")], rtol=1e-6)
    assert metrics["alert_posterior_collapse"] == float(metrics["active_units"] == 0)
  # smoke config: KL warm-up over 2 updates, beta_t = min(1, (t + 1) / 2)
  np.testing.assert_allclose([m["kl_weight"] for m in history[:3]], [0.5, 1.0, 1.0])
  assert history[-1]["elbo_bpd"] < history[0]["elbo_bpd"]  # it learns the batch
  np.testing.assert_allclose(history[-1]["loss"], history[-1]["elbo_bpd"], rtol=1e-5)


def test_log_likelihood_parts(trained):
  family, state, _ = trained
  assert family.likelihood_kind == "elbo"
  params = family.eval_params(state)
  batch = _batch(seed=1)
  out = jax.jit(family.log_likelihood)(params, batch, jax.random.key(2))
  assert set(out) == {"bpd", "recon_bpd", "kl_bpd"}
  for value in out.values():
    assert value.shape == (16,) and bool(jnp.all(jnp.isfinite(value)))
  np.testing.assert_allclose(out["bpd"], out["recon_bpd"] + out["kl_bpd"], rtol=1e-6)
  assert bool(jnp.all(out["kl_bpd"] >= 0))


def test_extra_likelihood_iwae(trained):
  family, state, _ = trained
  assert set(family.extra_likelihoods) == {"iwae-8"}                 # smoke: iwae_k = 8
  out = jax.jit(family.extra_likelihoods["iwae-8"])(family.eval_params(state), _batch(),
                                                    jax.random.key(3))
  assert out["bpd"].shape == (16,) and bool(jnp.all(jnp.isfinite(out["bpd"])))


@functools.lru_cache(maxsize=None)
def _iwae(k, chunk):
  """The family's jitted 'iwae-<k>' function (cached: one compile per k)."""
  c = _config()
  c.eval.iwae_k, c.eval.iwae_chunk = k, chunk
  return jax.jit(vae.make(c, SPEC).extra_likelihoods[f"iwae-{k}"])


# One tiled batch for all bound comparisons, so each bound compiles once.
TILED = _tile(_batch(seed=2), 8)  # 128 examples: 16 images, 8 independent draws each


def test_iwae_1_is_the_elbo_in_expectation(trained):
  """E[IWAE-1 - ELBO] = 0 per example. Paired: both bounds on the same examples
  (16 images x 8 tiles x 8 keys = 1024 pairs, independent z), so the spread
  between images cancels and the standard error is that of the difference."""
  family, state, _ = trained
  elbo_fn, iwae_fn = jax.jit(family.log_likelihood), _iwae(1, 30)
  diffs = [np.asarray(iwae_fn(state.params, TILED, jax.random.fold_in(jax.random.key(4), i))["bpd"]
                      - elbo_fn(state.params, TILED, jax.random.fold_in(jax.random.key(5), i))["bpd"])
           for i in range(8)]
  diff = np.concatenate(diffs)                                             # [1024] bits/dim
  stderr = diff.std(ddof=1) / np.sqrt(diff.size)
  assert abs(diff.mean()) < 4 * stderr, (diff.mean(), stderr)


def test_iwae_tightens_with_k(trained):
  """IWAE-k bits/dim (a -bound) is non-increasing in k on average over a fixed
  batch. k = 100 runs in chunks of 30 (the last one partial, masked)."""
  _, state, _ = trained
  means = [float(jnp.mean(_iwae(k, 30)(state.params, TILED, jax.random.key(6))["bpd"]))
           for k in (1, 10, 100)]
  assert means[0] >= means[1] >= means[2], means


@pytest.mark.parametrize("decode", ["mode", "sample"])
def test_sample(trained, decode):
  _, state, _ = trained
  c = _config()
  c.sample.decode = decode
  sample = jax.jit(vae.make(c, SPEC).sample, static_argnums=2)
  images = sample(state.params, jax.random.key(9), 16)
  assert images.shape == (16, 8, 8, 1) and images.dtype == jnp.uint8
  assert int(images.max()) <= 16


def test_reconstruct(trained):
  family, state, _ = trained
  batch = _batch()
  fn = jax.jit(functools.partial(vae.reconstruct, _config(), SPEC, posterior="sample", decode="mode"))
  recon = fn(family.eval_params(state), batch["image"], jax.random.key(10))
  assert recon.shape == batch["image"].shape and recon.dtype == jnp.uint8
  assert int(recon.max()) <= 16
  with pytest.raises(GenfamError, match="posterior"):
    vae.reconstruct(_config(), SPEC, state.params, batch["image"], jax.random.key(0), posterior="median")
  with pytest.raises(GenfamError, match="decode"):
    vae.reconstruct(_config(), SPEC, state.params, batch["image"], jax.random.key(0), decode="mean")


def test_reconstruct_mean_mode_is_the_decoded_posterior_mean(trained):
  """posterior='mean', decode='mode' ignores the rng: mode(decode(E_q[z|x]))."""
  family, state, _ = trained
  params, image = family.eval_params(state), _batch(seed=3)["image"]
  fn = jax.jit(functools.partial(vae.reconstruct, _config(), SPEC, posterior="mean", decode="mode"))
  first, second = fn(params, image, jax.random.key(12)), fn(params, image, jax.random.key(13))
  np.testing.assert_array_equal(first, second)
  model, pixels = vae.build(_config(), SPEC)

  @jax.jit
  def by_hand(params, image):
    x = image.astype(jnp.float32) * 2.0 / 16 - 1.0                      # bin centres of 17 bins
    mean, _ = model.apply({"params": params}, x, None, method=VAE.encode)
    return pixels.mode(model.apply({"params": params}, mean, None, method=VAE.decode)).astype(jnp.uint8)

  want = by_hand(params, image)
  np.testing.assert_array_equal(first, want)
  assert len(np.unique(want)) > 1                                         # not a constant picture


def test_class_conditional():
  c = _config(class_conditional=True)
  family = vae.make(c, SPEC)
  batch = _batch()
  state = family.init(jax.random.key(0), batch)
  assert "prior_table" in state.params
  out = jax.jit(family.log_likelihood)(state.params, batch, jax.random.key(2))
  assert out["bpd"].shape == (16,)
  labels = jnp.arange(16, dtype=jnp.int32) % 10
  sample = jax.jit(family.sample, static_argnums=2)
  images = sample(state.params, jax.random.key(3), 16, labels)
  assert images.shape == (16, 8, 8, 1) and images.dtype == jnp.uint8
  with pytest.raises(GenfamError, match="label"):
    family.init(jax.random.key(0), {"image": batch["image"]})


def test_collapse_flag_and_free_bits(trained):
  """A constant encoder mean has no active units -> 'alert_posterior_collapse' = 1; free bits
  lambda charge max(KL_l, lambda) per latent dim. (The loss alone, eagerly.)"""
  _, state, _ = trained
  free_bits, c = 10.0, _config()
  model, pixels = vae.build(c, SPEC)
  loss_fn = vae.loss_fn_for(model, pixels, SPEC.num_dims, kl_warmup_steps=0, free_bits=free_bits,
                            active_threshold=c.model.active_threshold)
  params = dict(state.params, encoder=dict(state.params["encoder"]))
  mean_head = params["encoder"]["Dense_0"]
  params["encoder"]["Dense_0"] = {"kernel": jnp.zeros_like(mean_head["kernel"]),
                                  "bias": mean_head["bias"]}
  loss, (metrics, model_state) = jax.jit(loss_fn)(params, state.model_state, _batch(),
                                                  jax.random.key(11))
  assert int(model_state["step"]) == NUM_STEPS + 1
  assert int(metrics["active_units"]) == 0 and float(metrics["alert_posterior_collapse"]) == 1.0
  assert metrics["kl_per_dim"].shape == (c.model.latent_dim,)
  assert float(metrics["kl_per_latent_max_nats"]) < free_bits
  expected = metrics["recon_bpd"] + nats_to_bpd(c.model.latent_dim * free_bits, SPEC.num_dims)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("shape,sizes", [((28, 28, 1), [(28, 28), (14, 14), (7, 7)]),
                                         ((32, 32, 3), [(32, 32), (16, 16), (8, 8)]),
                                         ((8, 8, 1), [(8, 8), (4, 4), (2, 2)]),
                                         ((7, 9, 1), [(7, 9), (4, 5), (2, 3)])])
def test_networks_keep_the_image_shape(shape, sizes):
  """No padding or cropping: the decoder's output has the stored shape (shapes only, no compile)."""
  assert level_sizes(shape[0], shape[1], 3) == sizes
  pixels = PixelDecoder("logistic_mixture", 256, num_mixtures=2)
  model = VAE(shape, 4, (4, 8, 8), (0, 1, 1), pixels.params_per_pixel, num_classes=10)
  x = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)
  label = jax.ShapeDtypeStruct((2,), jnp.int32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x, label)
  out = jax.eval_shape(functools.partial(model.apply, method=VAE.decode), variables,
                       jax.ShapeDtypeStruct((2, 4), jnp.float32), label)
  assert out.shape == (2,) + shape + (pixels.params_per_pixel,)
  mean, log_scale = jax.eval_shape(functools.partial(model.apply, method=VAE.encode), variables,
                                   x, label)
  assert mean.shape == log_scale.shape == (2, 4)


def test_configs():
  c = vae_config.get_config()
  assert c.family == "vae" and c.data.name == "fashion_mnist"
  assert c.eval.iwae_k == 1000 and c.eval.iwae_chunk > 0
  smoke = vae_config.get_config("smoke")
  assert (smoke.data.name, smoke.data.batch_size, smoke.train.num_steps) == ("digits", 16, 4)
  assert (smoke.eval.num_examples, smoke.eval.batch_size, smoke.eval.iwae_k) == (32, 32, 8)
  assert (smoke.sample.num, smoke.train.checkpoint_every, smoke.train.log_every) == (16, 2, 1)
  assert smoke.train.eval_examples == 32
  with pytest.raises(ValueError, match="smoke"):
    vae_config.get_config("big")


def test_bad_input_is_a_one_line_error():
  with pytest.raises(GenfamError, match="decoder"):
    vae.make(_config(decoder="bernoulli"), SPEC)
  with pytest.raises(GenfamError, match="blocks"):
    vae.make(_config(blocks=(0,)), SPEC)
  no_classes = DatasetSpec("unlabelled", (8, 8, 1), 17, ())
  with pytest.raises(GenfamError, match="conditional"):
    vae.make(_config(class_conditional=True), no_classes)
  family = vae.make(_config(), SPEC)
  with pytest.raises(GenfamError, match="images"):
    family.init(jax.random.key(0), {"image": np.zeros((2, 28, 28, 1), np.uint8)})
