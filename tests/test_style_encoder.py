"""The GAN's style encoder (genfam/families/auxiliary/style_encoder.py, configs/style_encoder.py).

With a stand-in frozen GAN (configs/gan.py:smoke at random weights, handed over as the loop hands a
`Frozen`): the loss is the latent error of S on G(z, c) computed by hand with the same key; the test
metrics follow their formulas; training on the one update lowers the latent error; G never changes;
a missing generator is a one-line error; style transfer (experiments/studies/gan_style_transfer.py) renders
G(S(x), c) beside each real x. Slow: configs/style_encoder.py:smoke end to end on the loop against a
trained GAN smoke workdir restored by genfam.loop.frozen, then the style-transfer picture.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import registry
from genfam.data import sources
from genfam.errors import GenfamError
from genfam.families import gan
from genfam.families.auxiliary import style_encoder
from genfam.loop import frozen
from genfam.nets.image_encoder import pixels_to_unit
from tests.conftest import load_config

DIGITS = sources.dataset_spec("digits")


@pytest.fixture(scope="module")
def generator():
  """A frozen label GAN (smoke sizes, random weights of init) as genfam.loop.frozen.Frozen."""
  c = load_config("gan")
  family = registry.make_family(c, DIGITS)
  state = jax.jit(family.init)(jax.random.PRNGKey(7), frozen.example_batch(DIGITS, 2))
  return frozen.Frozen(c, DIGITS, family.eval_params(state), dict(family.exports), 0)


def _batch(b=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 17, (b, 8, 8, 1)).astype(np.uint8), "label": np.arange(b, dtype=np.int32) % 10}


def test_the_loss_is_the_latent_error_of_generated_images(generator):
  config = load_config("style_encoder")
  family = style_encoder.make(config, DIGITS, generator=generator)
  batch, rng = _batch(), jax.random.PRNGKey(3)
  state = family.init(jax.random.PRNGKey(0), batch)
  _, metrics = jax.jit(family.update)(state, batch, rng)
  z = jax.random.normal(rng, (16, generator.config.model.latent_dim))
  mean = jax.jit(generator.functions["generate"])(generator.params, z, jax.nn.one_hot(batch["label"], 10))
  image = gan.to_pixels(mean, 17)
  net = style_encoder.StyleEncoder(z.shape[1], tuple(config.model.channels), config.model.convs_per_stage,
                                   config.model.features)
  z_hat = jax.jit(net.apply)({"params": state.params}, pixels_to_unit(image, 17))
  want = float(jnp.mean((z_hat - z) ** 2))
  assert float(metrics["loss"]) == pytest.approx(want, rel=1e-5) == float(metrics["latent_mse"])
  out = jax.jit(family.test_metrics)(family.eval_params(state), batch, rng)
  np.testing.assert_allclose(out["latent_explained"], 1 - np.minimum(np.mean((z_hat - z) ** 2, axis=1), 1), rtol=1e-5)
  redrawn = jax.jit(generator.functions["generate"])(
      generator.params, jax.jit(family.exports["encode"])(state.params, batch["image"]), jax.nn.one_hot(batch["label"], 10))
  rmse = np.sqrt(np.mean((np.asarray(redrawn) - batch["image"] / 16.0).reshape(16, -1) ** 2, axis=1))
  np.testing.assert_allclose(out["image_rmse"], rmse, rtol=1e-5)
  assert family.headline_metric == "latent_explained" and family.sample is None and family.log_likelihood is None


def test_training_lowers_the_latent_error_and_never_moves_the_generator(generator):
  config = load_config("style_encoder")
  config.optim.learning_rate = 3e-3
  before = jax.tree.map(np.array, generator.params)
  family = style_encoder.make(config, DIGITS, generator=generator)
  batch = _batch(64)
  state = family.init(jax.random.PRNGKey(0), batch)
  update = jax.jit(family.update)
  losses = []
  for step in range(150):
    state, metrics = update(state, batch, jax.random.PRNGKey(step))
    losses.append(float(metrics["loss"]))
  assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:5]), (losses[:5], losses[-20:])
  jax.tree.map(np.testing.assert_array_equal, before, generator.params)


def test_a_missing_or_wrong_generator_is_a_one_line_error(generator):
  config = load_config("style_encoder")
  with pytest.raises(GenfamError, match="model.generator_workdir"):
    style_encoder.make(config, DIGITS)
  with pytest.raises(GenfamError, match="not a GAN"):
    style_encoder.make(config, DIGITS, generator=generator._replace(config=load_config("vae")))


def test_style_transfer_renders_each_images_style_under_each_condition(generator):
  from experiments.studies import gan_style_transfer
  family = style_encoder.make(load_config("style_encoder"), DIGITS, generator=generator)
  real = _batch(3)["image"]
  params = family.eval_params(jax.jit(family.init)(jax.random.PRNGKey(0), _batch()))
  grid = gan_style_transfer.transfer_grid(family.exports["encode"], params, generator, real,
                                          {"label": np.array([4, 9], np.int32)}, 17).reshape(3, 3, 8, 8, 1)
  np.testing.assert_array_equal(grid[:, 0], real)
  styles = family.exports["encode"](params, real)
  for j, label in enumerate((4, 9)):
    mean = generator.functions["generate"](generator.params, styles, jax.nn.one_hot(np.full(3, label), 10))
    np.testing.assert_array_equal(grid[:, j + 1], gan.to_pixels(mean, 17))


@pytest.mark.slow
def test_smoke_trains_on_the_loop_against_a_trained_gan(tmp_path):
  from genfam.loop import train
  g = load_config("gan")
  g.train.progress, g.train.final_eval = False, False
  train.train_and_evaluate(g, str(tmp_path / "gan"))
  config = load_config("style_encoder")
  config.model.generator_workdir = str(tmp_path / "gan")
  summary = train.train_and_evaluate(config, str(tmp_path / "style"))
  report = summary["test"]["metrics"]
  assert report["headline"] == "latent_explained" and 0 <= report["latent_explained"] <= 1
  assert 0 <= report["image_rmse"] <= 1 and report["num_examples"] == config.eval.num_examples
  from experiments.studies import gan_style_transfer
  out = gan_style_transfer.main([f"--workdir={tmp_path / 'style'}", "--to=0,5,9", "--images=4",
                                 f"--out={tmp_path / 'style.png'}"])
  assert os.path.getsize(out) > 0
