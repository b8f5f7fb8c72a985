"""The defects a new user met (issue 31), each fixed with a test: conditional sampling of an
unconditional model, a mistyped config variant, a refused command leaving files behind, an
evaluation batch padded to eval.batch_size, the step a corrupt workdir's evaluation took,
notebooks run from the repository root, --out relative to the workdir, and the GAN's
optimizers ignoring optim keys. In-process where that checks the same thing; the
subprocess and notebook tests are marked slow."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import sharding
from genfam.data import sources
from genfam.evaluation import evaluate
from genfam.families import gan
from tests.conftest import load_config

# ---------------------------------------------------------------------------------------------
# The GAN's optimizers honour every optim key.

# optim key -> a value unlike the smoke config's, and which optimizers (G, D) it must change.
GAN_OPTIM_CHANGES = {
    "learning_rate": (1e-2, (True, False)),
    "d_learning_rate": (1e-2, (False, True)),
    "warmup_steps": (2, (True, True)),
    "decay_steps": (3, (True, True)),
    "clip_norm": (1e-3, (True, True)),
    "weight_decay": (0.5, (True, True)),
    "b1": (0.0, (True, True)),
    "b2": (0.5, (True, True)),
}


def _after_steps(tx, steps: int = 3):
  """Parameters after `steps` updates of `tx` on gradients that change from step to step."""
  params = {"w": jnp.linspace(0.5, 2.0, 4)}
  state = tx.init(params)
  for t in range(steps):
    grads = {"w": jnp.array([1.0, -2.0, 3.0, 0.5]) * (t + 1) * (-1.0) ** t}
    updates, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  return np.asarray(params["w"])


def test_every_optim_key_changes_the_gan_optimizers():
  config = load_config("gan")
  base = [_after_steps(tx) for tx in gan.optimizers(config.optim)]
  assert set(GAN_OPTIM_CHANGES) >= set(config.optim) - {"ema_decay"}, "a new optim key: add it here"
  for key, (value, expected) in GAN_OPTIM_CHANGES.items():
    changed = config.copy_and_resolve_references()
    changed.optim[key] = value
    got = [_after_steps(tx) for tx in gan.optimizers(changed.optim)]
    assert tuple(not np.allclose(g, b, rtol=0, atol=1e-9) for g, b in zip(got, base)) == expected, key


def test_the_gan_family_steps_with_the_configured_schedule():
  """With optim.decay_steps the first step's learning rate is 0 (the cosine schedule's warm-up
  start): the family's first update leaves both networks as they were (without it they move:
  tests/test_gan.py). The old optimizers ignored decay_steps and moved them."""
  from tests.test_gan import DIGITS, _batch
  batch = _batch()
  config = load_config("gan")
  config.optim.decay_steps = 2
  family = gan.make_family(config, DIGITS)
  state = family.init(jax.random.key(0), batch)
  new, _ = jax.jit(family.update)(state, batch, jax.random.key(1))
  for before, after in ((state.g_params, new.g_params), (state.d_params, new.d_params)):
    jax.tree.map(np.testing.assert_array_equal, before, after)


# ---------------------------------------------------------------------------------------------
# Evaluation batches are sized to what is evaluated.

@pytest.fixture(scope="module")
def digits_test():
  return sources.load(load_config("independent").data).sources["test"]


def _recording(shapes):
  """A likelihood with dequantization-like noise, row by row: u ~ U(0, 1) of the image's shape."""
  def fn(params, batch, rng):
    shapes.append(batch["image"].shape[0])
    u = jax.random.uniform(rng, batch["image"].shape)
    bpd = jnp.mean(batch["image"].astype(jnp.float32) + u, axis=(1, 2, 3))
    return {"bpd": bpd, "noise_bpd": jnp.mean(u, axis=(1, 2, 3))}
  return fn


@pytest.mark.parametrize("num_examples", [5, 16, 0])
def test_the_evaluated_batch_follows_the_number_of_examples(digits_test, num_examples):
  shapes = []
  report = evaluate.likelihood_report(_recording(shapes), None, digits_test, jax.random.key(0), sharding.data_mesh(),
                                      kind="exact", num_bins=17, batch_size=32, num_examples=num_examples)
  devices = jax.device_count()
  total = num_examples or len(digits_test)
  assert set(shapes) == {min(32, -(-total // devices) * devices)}
  assert report["num_examples"] == total


def test_a_sized_batch_gives_the_padded_batch_values(digits_test):
  """5 examples evaluated in a batch of 5 rows get the values they had as the first rows of a
  batch padded to eval.batch_size (32): each row's noise comes from its position."""
  fn = _recording([])
  rng = jax.random.key(3)
  report = evaluate.likelihood_report(fn, None, digits_test, rng, sharding.data_mesh(), kind="exact", num_bins=17,
                                      batch_size=32, num_examples=5)
  images = np.stack([np.asarray(digits_test[i]["image"]) for i in range(5)] + [np.asarray(digits_test[0]["image"])] * 27)
  padded = fn(None, {"image": images}, jax.random.fold_in(jax.random.fold_in(rng, 0), 0))
  np.testing.assert_allclose(report["bpd"], float(np.mean(np.asarray(padded["bpd"])[:5], dtype=np.float64)), rtol=1e-6)
  np.testing.assert_allclose(report["noise_bpd"], float(np.mean(np.asarray(padded["noise_bpd"])[:5])), rtol=1e-6)


def test_a_vae_iwae_bound_on_few_images_is_unchanged_by_the_sized_batch(digits_test):
  """The VAE's IWAE bound (the issue's case) on 4 images: a batch of 4 rows gives the values of
  the first 4 rows of a batch of eval.batch_size (here 8)."""
  from genfam.registry import make_family
  config = load_config("vae")
  spec = sources.load(config.data).spec
  family = make_family(config, spec)
  images = np.stack([np.asarray(digits_test[i]["image"]) for i in range(4)])
  labels = np.asarray([int(digits_test[i]["label"]) for i in range(4)], np.int32)
  batch = {"image": images, "label": labels}
  params = family.eval_params(family.init(jax.random.key(0), batch))
  kind, fn = next(iter(family.extra_likelihoods.items()))
  assert kind.startswith("iwae-")
  rng = jax.random.key(7)
  report = evaluate.likelihood_report(fn, params, digits_test, rng, sharding.data_mesh(), kind=kind, num_bins=17,
                                      batch_size=8, num_examples=4)
  padded = {"image": np.concatenate([images, images[:1].repeat(4, 0)]),
            "label": np.concatenate([labels, labels[:1].repeat(4)])}
  want = np.asarray(jax.jit(fn)(params, padded, jax.random.fold_in(jax.random.fold_in(rng, 0), 0))["bpd"])[:4]
  np.testing.assert_allclose(report["bpd"], float(np.mean(want, dtype=np.float64)), rtol=1e-5)
