"""The diffusion U-Net (shapes, null-label dropout) and the family's guided sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data.spec import DatasetSpec
from genfam.families import diffusion as family_module
from genfam.nets.unet import UNet
from tests.conftest import load_config


@pytest.mark.parametrize("size,mult,attn", [(28, (1, 2, 2), (14, 7)), (8, (1, 2, 2), (2,)),
                                            (32, (1, 2, 2, 2), (8,))])
def test_unet_shapes(size, mult, attn):
  net = UNet(out_channels=3, base_channels=8, channel_mult=mult, attn_resolutions=attn, num_classes=10)
  x, t, y = jnp.zeros((2, size, size, 3)), jnp.array([0, 999]), jnp.array([3, 10])
  params = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x, t, y))   # shapes only, no compile
  out = jax.eval_shape(lambda p: net.apply(p, x, t, y, True, rngs={"dropout": jax.random.PRNGKey(1)}), params)
  assert out.shape == (2, size, size, 3) and out.dtype == jnp.float32
  assert params["params"]["Embed_0"]["embedding"].shape == (11, 32)   # 10 labels + the null label


def test_unet_rejects_sizes_that_do_not_halve():
  net = UNet(out_channels=1, base_channels=8, channel_mult=(1, 2, 2, 2))
  with pytest.raises(ValueError, match="divisible by 8"):
    jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), jnp.zeros(1, jnp.int32)))


def _random_params(init_fn, seed, scale=0.3):
  """Random weights in the shapes init_fn would make, without compiling it (zero-initialised
  output layers would also hide the label)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), jax.eval_shape(init_fn))


def test_null_label_dropout_only_in_training():
  net = UNet(out_channels=1, base_channels=8, channel_mult=(1, 2), attn_resolutions=(4,), dropout=0.0,
             num_classes=3, p_uncond=1.0)   # p = 1: training always drops the label
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1))
  t, y = jnp.array([1, 5, 9]), jnp.array([0, 1, 2])
  params = _random_params(lambda: net.init(jax.random.PRNGKey(1), x, t, y), 2)

  @jax.jit
  def outputs(params, rng):
    return (net.apply(params, x, t, y, False),                          # evaluation, with labels
            net.apply(params, x, t, y, False, rngs={"dropout": rng}),   # evaluation, rng offered
            net.apply(params, x, t, None, False),                       # the null label
            net.apply(params, x, t, y, True, rngs={"dropout": rng}))    # training: labels dropped

  with_label, with_label_rng, null, train = outputs(params, jax.random.PRNGKey(3))
  np.testing.assert_array_equal(with_label, with_label_rng)
  assert not np.allclose(with_label, null, atol=1e-3), "the label must change the output at evaluation"
  np.testing.assert_allclose(train, null, rtol=1e-6, atol=1e-6)


def test_family_guidance_zero_equals_unconditional_samples():
  config = load_config("ddpm")
  config.sample.sampler, config.sample.ddim_steps, config.sample.eta = "ddim", 3, 1.0
  spec = DatasetSpec("digits", (8, 8, 1), 17, tuple(str(i) for i in range(10)))
  family = family_module.make(config, spec)
  batch = {"image": np.zeros((2, 8, 8, 1), np.uint8), "label": np.zeros(2, np.int32)}
  params = _random_params(lambda: family.eval_params(family.init(jax.random.PRNGKey(0), batch)), 1, 0.5)
  labels = jnp.array([0, 3, 7, 9])
  sample = lambda w, condition: family_module.make_sampler(config, spec, guidance=w)(
      params, jax.random.PRNGKey(2), 4, condition)
  unconditional = sample(0.0, None)
  assert unconditional.shape == (4, 8, 8, 1) and unconditional.dtype == jnp.uint8
  np.testing.assert_array_equal(sample(0.0, labels), unconditional)
  assert not np.array_equal(sample(1.0, labels), unconditional)
