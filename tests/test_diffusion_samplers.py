"""DDPM / DDIM samplers, timestep lists and classifier-free guidance (analytic denoisers)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.diffusion import samplers, schedules

# Hand-written expected lists, in sampling order (schedule indices = paper step - 1).
EXPECTED_TIMESTEPS = {
    (1000, 10, "linspace"): [999, 888, 777, 666, 555, 444, 333, 222, 111, 0],
    (1000, 10, "leading"): [900, 800, 700, 600, 500, 400, 300, 200, 100, 0],
    (1000, 10, "trailing"): [999, 899, 799, 699, 599, 499, 399, 299, 199, 99],
    (1000, 3, "linspace"): [999, 500, 0],        # 499.5 rounds half to even
    (1000, 3, "leading"): [666, 333, 0],
    (1000, 3, "trailing"): [999, 666, 332],      # round(1000 - i * 333.33) - 1
    (10, 3, "linspace"): [9, 4, 0],              # 4.5 rounds half to even
    (10, 3, "leading"): [6, 3, 0],
    (10, 3, "trailing"): [9, 6, 2],
    (10, 1, "linspace"): [0],
    (10, 1, "leading"): [0],
    (10, 1, "trailing"): [9],
}


@pytest.mark.parametrize("key", sorted(EXPECTED_TIMESTEPS), ids=lambda k: "-".join(map(str, k)))
def test_ddim_timestep_lists(key):
  got = samplers.ddim_timesteps(*key)
  assert got.tolist() == EXPECTED_TIMESTEPS[key]


@pytest.mark.parametrize("spacing", samplers.SPACINGS)
def test_ddim_timesteps_with_s_equal_t_visit_every_step(spacing):
  assert samplers.ddim_timesteps(7, 7, spacing).tolist() == [6, 5, 4, 3, 2, 1, 0]
  with pytest.raises(ValueError, match="steps"):
    samplers.ddim_timesteps(7, 8, spacing)
  with pytest.raises(ValueError, match="spacing"):
    samplers.ddim_timesteps(7, 3, "uniform")


def _oracle(s, x0_star):
  def eps_fn(x, t):
    return (x - s.sqrt_alpha_bars[t][:, None] * x0_star) / s.sqrt_one_minus_alpha_bars[t][:, None]
  return eps_fn


def test_ddim_eta0_is_deterministic_and_maps_noise_to_the_one_image():
  with jax.enable_x64(True):
    s = schedules.make_schedule("linear", 30, jnp.float64)
    x0_star = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float64)[None]
    run = jax.jit(lambda rng, x_T: samplers.ddim_sample(_oracle(s, x0_star), s, samplers.ddim_timesteps(30, 5, "trailing"),
                                                        rng, (3, 6), eta=0.0, x_T=x_T, dtype=jnp.float64))
    x_T = jax.random.normal(jax.random.PRNGKey(0), (3, 6), jnp.float64)
    a = run(jax.random.PRNGKey(1), x_T)
    b = run(jax.random.PRNGKey(2), x_T)   # different step noise: eta = 0 uses none
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, jnp.broadcast_to(x0_star, (3, 6)), atol=1e-9)


def test_ddim_eta0_maps_gaussian_noise_onto_gaussian_data():
  """For data N(m, s^2) the probability-flow map is x_T -> m + s x_T; DDIM at S = T follows it."""
  m, sd, num_steps = 0.3, 0.5, 200
  with jax.enable_x64(True):
    s = schedules.make_schedule("cosine", num_steps, jnp.float64)

    def eps_fn(x, t):  # optimal: E[eps | x_t] for Gaussian data
      a = s.alpha_bars[t][:, None]
      return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * m) / (a * sd ** 2 + 1 - a)

    x_T = jax.random.normal(jax.random.PRNGKey(0), (512, 1), jnp.float64)
    x0 = jax.jit(lambda x: samplers.ddim_sample(eps_fn, s, samplers.ddim_timesteps(num_steps, num_steps, "trailing"),
                                                jax.random.PRNGKey(1), x.shape, eta=0.0, x_T=x,
                                                dtype=jnp.float64))(x_T)
    np.testing.assert_allclose(x0, m + sd * x_T, atol=0.02)


@pytest.mark.parametrize("clip_x0", [False, True])
def test_ddim_eta1_full_steps_equals_ddpm_posterior_variance_step_for_step(clip_x0):
  with jax.enable_x64(True):
    num_steps = 25
    s = schedules.make_schedule("cosine", num_steps, jnp.float64)
    log_var = schedules.model_log_variance(s, "posterior")
    eps_fn = lambda x, t: jnp.sin(3.0 * x) + 0.01 * t[:, None]   # any fixed network
    rng, shape = jax.random.PRNGKey(7), (4, 5)

    @jax.jit
    def both():
      ddpm = samplers.ddpm_sample(eps_fn, s, log_var, rng, shape, clip_x0=clip_x0, dtype=jnp.float64,
                                  return_trajectory=True)
      ddim = samplers.ddim_sample(eps_fn, s, samplers.ddim_timesteps(num_steps, num_steps, "trailing"), rng,
                                  shape, eta=1.0, clip_x0=clip_x0, dtype=jnp.float64, return_trajectory=True)
      return ddpm, ddim

    (x_ddpm, traj_ddpm), (x_ddim, traj_ddim) = both()
    assert traj_ddpm.shape == (num_steps,) + shape
    np.testing.assert_allclose(traj_ddim, traj_ddpm, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(x_ddim, x_ddpm, rtol=1e-9, atol=1e-9)
    assert float(jnp.std(traj_ddpm[0] - traj_ddpm[1])) > 0   # the steps do inject noise


def test_ddpm_step_uses_the_chosen_variance_and_no_noise_at_the_end():
  s = schedules.make_schedule("linear", 10)
  eps_fn = lambda x, t: jnp.zeros_like(x)
  x, noise = jnp.zeros((2, 3)), jnp.ones((2, 3))
  for variance in schedules.FIXED_VARIANCES:
    log_var = schedules.model_log_variance(s, variance)
    out = samplers.ddpm_step(eps_fn, s, log_var, x, 5, noise)
    np.testing.assert_allclose(out, jnp.exp(0.5 * log_var[5]) * noise, rtol=1e-6)
    np.testing.assert_allclose(samplers.ddpm_step(eps_fn, s, log_var, x, 0, noise), 0.0)


def test_guidance_weight_zero_is_the_unconditional_sampler():
  s = schedules.make_schedule("linear", 12)
  eps_c = lambda x, t, c: jnp.tanh(x + 0.3 * c[:, None].astype(x.dtype)) + 0.01 * t[:, None]
  cond, null = jnp.array([0, 1, 2, 1]), jnp.full((4,), 3)
  ts = samplers.ddim_timesteps(12, 4, "linspace")
  rng, shape = jax.random.PRNGKey(0), (4, 3)

  @jax.jit
  def run():
    guided0 = samplers.ddim_sample(samplers.guided_eps_fn(eps_c, cond, null, 0.0), s, ts, rng, shape, eta=0.5, clip_x0=True)
    uncond = samplers.ddim_sample(lambda x, t: eps_c(x, t, null), s, ts, rng, shape, eta=0.5, clip_x0=True)
    guided1 = samplers.ddpm_sample(samplers.guided_eps_fn(eps_c, cond, null, 1.0), s, s.betas, rng, shape)
    cond_only = samplers.ddpm_sample(lambda x, t: eps_c(x, t, cond), s, s.betas, rng, shape)
    guided3 = samplers.ddpm_sample(samplers.guided_eps_fn(eps_c, cond, null, 3.0), s, s.betas, rng, shape)
    return guided0, uncond, guided1, cond_only, guided3

  guided0, uncond, guided1, cond_only, guided3 = run()
  np.testing.assert_array_equal(guided0, uncond)
  np.testing.assert_array_equal(guided1, cond_only)
  assert not np.allclose(guided3, cond_only)


def test_to_pixels_rounds_to_bins():
  x = jnp.array([-1.5, -1.0, -0.99, 0.0, 0.999, 1.0, 2.0])
  assert samplers.to_pixels(x, 256).tolist() == [0, 0, 1, 128, 255, 255, 255]
  assert samplers.to_pixels(x, 17).tolist() == [0, 0, 0, 8, 16, 16, 16]
  assert samplers.to_pixels(x, 17).dtype == jnp.uint8
