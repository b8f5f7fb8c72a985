"""Every family's quality-diversity knob (`--config.sample.*`): neutral value = today's sampler, monotone effect.

- Flows (RealNVP, Glow): sample.temperature T scales the base noise eps ~ N(0, T^2 I) exactly
  (||eps_T|| = T ||eps_1|| from one rng), and a sample is the inverse of that noise.
- GAN: sample.truncation tau bounds |z_i| <= T tau; tau = 0 is exactly the untruncated draw
  T N(0, I) that the GAN always drew; the sample is G of that z; E|z| grows with tau.
- VAE: the same truncation of the prior noise; at tau = 0 the sample equals the prior draw
  mu + T sigma eps, eps ~ N(0, I), with the key split the sampler always used.
- Image-GPT: sample.temperature divides the logits; colder draws agree more with the argmax, and
  a near-zero temperature samples the same image from any key.
- Bad knobs are one-line errors.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data import sources
from genfam.errors import GenfamError
from genfam.families import flow, gan, igpt, vae
from genfam.nets.transformer import draw
from genfam.nets.vae_nets import VAE
from tests.conftest import load_config

DIGITS = sources.dataset_spec("digits")
RNG = jax.random.PRNGKey(3)


def _batch(b=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, DIGITS.num_bins, (b, *DIGITS.image_shape)).astype(np.uint8),
          "label": np.arange(b, dtype=np.int32) % 10}


def _initial_params(family):
  """The family's evaluation parameters at initialisation: one jitted init (eagerly, each layer's ops
  would compile one by one)."""
  return family.eval_params(jax.jit(family.init)(jax.random.PRNGKey(0), _batch()))


def _family(module, name, **sample):
  config = load_config(name)
  for key, value in sample.items():
    config.sample[key] = value
  return module.make(config, DIGITS)


@pytest.mark.parametrize("name", ["glow", "realnvp"])
def test_flow_temperature_scales_the_base_noise_and_the_sample_inverts_it(name):
  eps1 = flow.base_noise(RNG, 6, DIGITS.num_dims, 1.0)
  for t in (0.0, 0.5, 0.7):
    eps = flow.base_noise(RNG, 6, DIGITS.num_dims, t)
    np.testing.assert_allclose(jnp.linalg.norm(eps, axis=1), t * jnp.linalg.norm(eps1, axis=1), rtol=1e-6)
  assert load_config(name).sample.temperature == 1.0                      # the default samples as trained
  family = _family(flow, name, temperature=0.5)
  params = _initial_params(family)
  model = flow.build_model(load_config(name).model, DIGITS.image_shape)
  inverse = jax.jit(lambda eps: model.apply(params, eps, None, method=model.inverse_and_log_det)[0])
  eps_rng, _ = jax.random.split(RNG)
  for t in (0.5, 1.0):   # the config's temperature, then the call's
    y = inverse(flow.base_noise(eps_rng, 6, DIGITS.num_dims, t))
    got = family.sample(params, RNG, 6) if t == 0.5 else family.sample(params, RNG, 6, temperature=t)
    np.testing.assert_array_equal(got, flow.quantize(y, DIGITS.num_bins))


def test_gan_truncation_bounds_the_noise_and_off_is_the_plain_normal():
  num, dim = 4000, 8
  plain = gan.latent_noise(RNG, num, dim, 0.8, 0.0)
  np.testing.assert_array_equal(plain, 0.8 * jax.random.normal(RNG, (num, dim)))   # today's draw
  means = []
  for tau in (0.25, 0.5, 1.0, 2.0):
    z = gan.latent_noise(RNG, num, dim, 0.8, tau)
    assert float(jnp.max(jnp.abs(z))) <= 0.8 * tau + 1e-6
    means.append(float(jnp.mean(jnp.abs(z))))
  means.append(float(jnp.mean(jnp.abs(plain))))
  assert means == sorted(means) and means[0] < means[-1]
  # E|u| of N(0, 1) truncated at 1: 2 (phi(0) - phi(1)) / (2 Phi(1) - 1) = 0.4598
  assert means[2] / 0.8 == pytest.approx(0.4598, abs=0.01)


def test_gan_sample_is_the_generator_of_the_truncated_noise():
  config = load_config("gan")
  config.sample.truncation = 0.5
  family = gan.make_family(config, DIGITS)
  params = _initial_params(family)
  labels = np.arange(5, dtype=np.int32)
  z = gan.latent_noise(RNG, 5, config.model.latent_dim, 1.0, 0.5)
  generate = jax.jit(family.exports["generate"])   # one program for both draws below
  want = gan.to_pixels(generate(params, z, jax.nn.one_hot(labels, 10)), DIGITS.num_bins)
  np.testing.assert_array_equal(family.sample(params, RNG, 5, labels), want)
  default = gan.make_family(load_config("gan"), DIGITS)
  assert gan.build(load_config("gan"), DIGITS).generator == gan.build(config, DIGITS).generator   # its generate
  want = gan.to_pixels(generate(params, jax.random.normal(RNG, (5, config.model.latent_dim)),
                                jax.nn.one_hot(labels, 10)), DIGITS.num_bins)
  np.testing.assert_array_equal(default.sample(params, RNG, 5, labels), want)   # truncation off: today's sampler


def test_vae_truncation_off_is_the_prior_draw_and_on_bounds_the_noise():
  config = load_config("vae")
  family = vae.make(config, DIGITS)
  params = _initial_params(family)
  model, pixels = vae.build(config, DIGITS)

  @jax.jit   # one program for both draws below (eagerly, each layer's ops would compile one by one)
  def from_noise(eps, t):
    mean, log_scale = model.apply({"params": params}, None, 6, method=VAE.prior)
    z = mean + t * jnp.exp(log_scale) * eps
    return pixels.mode(model.apply({"params": params}, z, None, method=VAE.decode)).astype(jnp.uint8)

  def by_hand(eps_fn, t):
    k_z, _ = jax.random.split(RNG)
    shape = jax.eval_shape(lambda: model.apply({"params": params}, None, 6, method=VAE.prior)[0]).shape
    return from_noise(eps_fn(k_z, shape), t)

  np.testing.assert_array_equal(family.sample(params, RNG, 6), by_hand(jax.random.normal, 1.0))   # today's
  config.sample.temperature, config.sample.truncation = 0.7, 0.5
  truncated = vae.make(config, DIGITS).sample(params, RNG, 6)
  np.testing.assert_array_equal(
      truncated, by_hand(lambda k, s: jax.random.truncated_normal(k, -0.5, 0.5, s), 0.7))
  eps = vae.prior_noise(RNG, (2000, 4), 0.5)
  assert float(jnp.max(jnp.abs(eps))) <= 0.5
  np.testing.assert_array_equal(vae.prior_noise(RNG, (2000, 4)), jax.random.normal(RNG, (2000, 4)))


def test_colder_draws_agree_more_with_the_argmax():
  logits = jax.random.normal(jax.random.PRNGKey(1), (4000, 17))
  best = jnp.argmax(logits, axis=-1)
  agreement = [float(jnp.mean(draw(RNG, logits, t) == best)) for t in (2.0, 1.0, 0.5, 0.25, 0.05)]
  assert agreement == sorted(agreement) and agreement[-1] > 0.9 and agreement[0] < 0.3


def test_igpt_near_zero_temperature_samples_one_image_from_any_key():
  family = _family(igpt, "igpt", temperature=1e-4)
  params = _initial_params(family)
  leaves, tree = jax.tree.flatten(params)   # away from the initial output layer's tied logits
  params = tree.unflatten([p + 0.3 * jax.random.normal(jax.random.PRNGKey(i), p.shape, p.dtype)
                           for i, p in enumerate(leaves)])
  a, b = family.sample(params, jax.random.PRNGKey(1), 3), family.sample(params, jax.random.PRNGKey(2), 3)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a[0], a[1])
  assert load_config("igpt").sample.temperature == 1.0   # the default samples as trained


@pytest.mark.parametrize("name,module,key", [("gan", gan, "truncation"), ("gan", gan, "temperature"),
                                             ("vae", vae, "truncation"), ("vae", vae, "temperature"),
                                             ("glow", flow, "temperature")])
def test_a_negative_knob_is_a_one_line_error(name, module, key):
  config = load_config(name)
  config.sample[key] = -0.5
  with pytest.raises(GenfamError, match=f"sample.{key}=-0.5 must be >= 0"):
    (module.make_family if module is gan else module.make)(config, DIGITS)
