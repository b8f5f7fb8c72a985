"""The latent autoencoder (genfam/families/two_stage/latent_autoencoder.py): its reported number is the
beta = 1 ELBO whatever beta trains it (parts against a hand computation from the exports), the training
loss weighs the KL by beta, the latent grid's shape, the exports' contract, bad configs."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import registry
from genfam.data import sources
from genfam.errors import GenfamError
from genfam.families.two_stage import latent_autoencoder
from tests.conftest import load_config


def _family(**model_keys):
  config = load_config("latent_autoencoder")
  config.model.update(model_keys)
  spec = sources.dataset_spec(config.data.name)
  return config, spec, registry.make_family(config, spec)


def _batch(spec, n=4):
  return {"image": np.random.default_rng(0).integers(0, spec.num_bins, (n, *spec.image_shape)).astype(np.uint8)}


class ElboTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_reported_bound_is_the_beta_one_elbo_from_the_exports(self):
    """bpd = -log2 p(x|z) / D at z = mean + std eps (eps the log-likelihood's own draw)
    + KL(q || N(0, I)) / (D log 2)."""
    _, spec, family = _family(kl_weight=0.01)
    batch, rng = _batch(spec), jax.random.PRNGKey(3)
    params = family.eval_params(family.init(jax.random.PRNGKey(0), batch))
    parts = self.variant(family.log_likelihood)(params, batch, rng)
    mean, log_scale = family.exports["encode"](params, batch["image"])
    z = mean + jnp.exp(log_scale) * jax.random.normal(rng, mean.shape)
    recon = family.exports["decoder_nll_bits"](params, batch["image"], z)
    kl_nats = np.sum(0.5 * (np.exp(2 * log_scale) + mean ** 2 - 1.0) - log_scale, axis=(1, 2, 3))
    np.testing.assert_allclose(parts["recon_bpd"], recon, rtol=1e-5)
    np.testing.assert_allclose(parts["kl_bpd"], kl_nats / (spec.num_dims * math.log(2)), rtol=1e-4)
    np.testing.assert_allclose(parts["bpd"], parts["recon_bpd"] + parts["kl_bpd"], rtol=1e-6)

  def test_the_loss_weighs_the_kl_by_beta(self):
    beta = 0.01
    _, spec, family = _family(kl_weight=beta)
    batch = _batch(spec)
    state = family.init(jax.random.PRNGKey(0), batch)
    _, metrics = jax.jit(family.update)(state, batch, jax.random.PRNGKey(1))
    assert metrics["kl_bpd"] > 1e-3
    np.testing.assert_allclose(metrics["elbo_bpd"], metrics["recon_bpd"] + metrics["kl_bpd"], rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], metrics["recon_bpd"] + beta * metrics["kl_bpd"], rtol=1e-5)


def test_latent_grid_and_exports():
  full = load_config("latent_autoencoder", "")
  assert latent_autoencoder.latent_shape(full, sources.dataset_spec("fashion_mnist")) == (7, 7, 4)
  _, spec, family = _family()
  batch = _batch(spec, 3)
  params = family.eval_params(family.init(jax.random.PRNGKey(0), batch))
  mean, log_scale = family.exports["encode"](params, batch["image"])
  assert mean.shape == log_scale.shape == (3, 4, 4, 2)
  for how in ("mode", "sample"):
    images = family.exports["decode"](params, mean, jax.random.PRNGKey(1), how)
    assert images.shape == (3, *spec.image_shape) and images.dtype == jnp.uint8 and int(images.max()) < spec.num_bins
  with pytest.raises(GenfamError, match="unknown decode"):
    family.exports["decode"](params, mean, None, "mean")


@pytest.mark.parametrize("keys, message", [
    ({"kl_weight": 0.0}, "kl_weight"),
    ({"latent_channels": 0}, "latent_channels"),
    ({"decoder": "bernoulli"}, "unknown config.model.decoder"),
    ({"blocks": (0,)}, "equal length"),
])
def test_bad_configs_get_one_line(keys, message):
  with pytest.raises(GenfamError, match=message) as e:
    _family(**keys)
  assert "\n" not in str(e.value)
