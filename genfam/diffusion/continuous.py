"""Continuous-time variational diffusion (Kingma et al. 2021, VDM) as plain array functions.

Variance preserving, with a noise schedule gamma(t) increasing on t in [0, 1]:
  z_t = alpha_t x_0 + sigma_t eps,  alpha_t^2 = sigmoid(-gamma(t)),  sigma_t^2 = sigmoid(gamma(t)),
  SNR(t) = alpha_t^2 / sigma_t^2 = exp(-gamma(t)).
x_0 is the bin centre of x in {0 .. K-1} on [-1, 1] (as DDPM, `genfam.likelihood.discretized`).

The bound, per example, in nats (bits/dim = nats / (D log 2), D stored pixels):

  -log P(x) <= L_prior + L_recon + L_diffusion
  L_prior     = KL(q(z_1 | x) || N(0, I)) = 1/2 sum_i (sigma_1^2 + alpha_1^2 x_i^2 - log sigma_1^2 - 1)
  L_recon     = E_{z_0 ~ q(z_0 | x)} -log P(x | z_0),  P the discretized Gaussian over the K bins
                with mean z_0 / alpha_0 and log std gamma(0) / 2 (= log(sigma_0 / alpha_0)) and
                open edge bins: the decoder of DDPM's L_0, `bound.decoder_nll`, which needs no network
  L_diffusion = 1/2 E_{t ~ U(0, 1), eps} gamma'(t) ||eps - eps_hat(z_t, t)||^2      (T -> infinity)

With T steps (s = (i - 1) / T, t = i / T, i = 1 .. T) the diffusion loss is the sum of the
T Gaussian KLs of DDPM's bound with the posterior variance (`bound.vlb_term`),
  L_T = T/2 E_{i, eps} (exp(gamma(t) - gamma(s)) - 1) ||eps - eps_hat(z_t, t)||^2,
and L_T decreases to L_infinity as T grows (VDM's Sec. 4); `discrete_diffusion_loss`.

The continuous bound is estimated without bias by sampling t: `vlb` draws k stratified
t per example (t_j = (u + j / k) mod 1, u ~ U(0, 1), each t_j uniform), a stochastic
unbiased estimate of the bound, hence the likelihood kind 'vlb-continuous-<k>t'.

Continuous data z in R^{D_z} (a latent diffusion prior's latents, `continuous_vlb`): the same
bound on the DENSITY -log p(z), with z in place of x_0 and a Gaussian reconstruction term,
  L_recon = E_{z_0 ~ q(z_0 | z)} -log N(z; z_0 / alpha_0, exp(gamma_0) I) = D_z/2 (1 + log 2 pi + gamma_0)
(z_0 / alpha_0 - z = exp(gamma_0 / 2) eps, so its expectation over eps is exact and needs no
draw); L_prior and L_diffusion are as above. For Gaussian z ~ N(mu, v) and the exact denoiser
the three terms have closed forms whose sum tends to -log N(z; mu, v) as gamma_0 -> -inf,
gamma_1 -> +inf (tests/test_latent_diffusion.py).

DDIM in continuous time (`ddim_schedule`): the schedule's alpha-bar at S equally spaced t,
alpha-bar_i = sigmoid(-gamma((i + 1) / S)), as a `schedules.Schedule`, so `samplers.ddim_sample`
runs it unchanged; the sampler's index i is the time (i + 1) / S.

gamma_fn: t [B] float -> gamma [B], elementwise (so its derivative is one jvp).
eps_fn:   (z_t [B, ...], t [B] float in [0, 1]) -> eps_hat [B, ...].
"""
from typing import Callable

import math

import jax
import jax.numpy as jnp

from genfam.diffusion.bound import decoder_nll
from genfam.diffusion.schedules import Schedule
from genfam.likelihood.discretized import bin_centres

GammaFn = Callable[[jax.Array], jax.Array]
EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


def _expand(v, ndim):  # [B] -> [B, 1, ..] of rank ndim
  return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def _sum_dims(v):  # [B, ...] -> [B]
  return jnp.sum(v.reshape(v.shape[0], -1), axis=-1)


def linear_gamma(gamma_min: float, gamma_max: float) -> GammaFn:
  """The fixed schedule gamma(t) = gamma_min + (gamma_max - gamma_min) t (VDM's default fixed one)."""
  return lambda t: gamma_min + (gamma_max - gamma_min) * t


def gamma_and_slope(gamma_fn: GammaFn, t):
  """gamma(t) [B] and gamma'(t) [B] (one forward-mode derivative; gamma_fn is elementwise)."""
  return jax.jvp(gamma_fn, (t,), (jnp.ones_like(t),))


def alpha_sigma(gamma):
  """alpha = sqrt(sigmoid(-gamma)), sigma = sqrt(sigmoid(gamma)), elementwise."""
  return jnp.sqrt(jax.nn.sigmoid(-gamma)), jnp.sqrt(jax.nn.sigmoid(gamma))


def q_sample(x0, gamma, eps):
  """z = alpha x_0 + sigma eps: x0, eps [B, ...], gamma [B] -> [B, ...]."""
  alpha, sigma = alpha_sigma(_expand(gamma, x0.ndim))
  return alpha * x0 + sigma * eps


def prior_kl(x0, gamma_1):
  """L_prior = KL(N(alpha_1 x_0, sigma_1^2) || N(0, 1)) summed over pixels: [B, ...], [B] or () -> [B] nats."""
  g = _expand(jnp.broadcast_to(gamma_1, x0.shape[:1]), x0.ndim)
  sigma2, alpha2 = jax.nn.sigmoid(g), jax.nn.sigmoid(-g)
  log_sigma2 = jax.nn.log_sigmoid(g)
  return _sum_dims(0.5 * (sigma2 + alpha2 * x0 ** 2 - log_sigma2 - 1.0))


def reconstruction_nll(x_int, x0, gamma_0, eps, num_bins: int):
  """L_recon for one draw z_0 = alpha_0 x_0 + sigma_0 eps: -log P(x | z_0) [B] nats.

  P is the discretized Gaussian N(z_0 / alpha_0, exp(gamma_0)) over the K bins
  (`bound.decoder_nll`, DDPM's L_0 decoder). x_int int [B, ...]; gamma_0 [B] or ().
  """
  g = jnp.broadcast_to(gamma_0, x0.shape[:1])
  z0 = q_sample(x0, g, eps)
  alpha, _ = alpha_sigma(_expand(g, x0.ndim))
  return decoder_nll(x_int, z0 / alpha, _expand(g, x0.ndim), num_bins)


def diffusion_loss(eps, eps_hat, gamma_slope):
  """L_infinity for one (t, eps): 1/2 gamma'(t) ||eps - eps_hat||^2: [B, ...], [B] -> [B] nats."""
  return 0.5 * gamma_slope * _sum_dims((eps - eps_hat) ** 2)


def discrete_diffusion_loss(eps, eps_hat, gamma_s, gamma_t, num_steps: int):
  """L_T for one (i, eps): T/2 (exp(gamma_t - gamma_s) - 1) ||eps - eps_hat||^2 -> [B] nats.

  Equals T times the KL(q(z_s | z_t, x) || p(z_s | z_t)) of DDPM's bound with the
  posterior variance, at the same z_t (tested against `bound.vlb_term`).
  """
  return 0.5 * num_steps * jnp.expm1(gamma_t - gamma_s) * _sum_dims((eps - eps_hat) ** 2)


def stratified_times(rng, batch: int, num_t: int, dtype=jnp.float32):
  """t [num_t, B]: (u_b + j / num_t) mod 1 with u_b ~ U(0, 1) per example; each t uniform on [0, 1)."""
  u = jax.random.uniform(rng, (1, batch), dtype)
  return jnp.mod(u + jnp.arange(num_t, dtype=dtype)[:, None] / num_t, 1.0)


def vlb(eps_fn: EpsFn, gamma_fn: GammaFn, x_int, rng, num_bins: int, *, num_t: int = 1,
        times=None, dtype=jnp.float32):
  """The continuous-time bound per example, nats: {'prior', 'recon', 'diffusion'}, each [B].

  The diffusion term averages num_t stratified t per example (`stratified_times`;
  or the given times [num_t, B]), each with its own eps, evaluated in sequence
  (lax.map: memory of one network batch). Prior and reconstruction need no network;
  the reconstruction uses one eps draw.
  """
  x0 = bin_centres(x_int, num_bins, dtype)
  rng_t, rng_eps, rng_rec = jax.random.split(rng, 3)
  ends = gamma_fn(jnp.array([0.0, 1.0], dtype))
  recon_eps = jax.random.normal(rng_rec, x0.shape, dtype)
  return {"prior": prior_kl(x0, ends[1]), "recon": reconstruction_nll(x_int, x0, ends[0], recon_eps, num_bins),
          "diffusion": diffusion_term(eps_fn, gamma_fn, x0, rng_t, rng_eps, num_t, times)}


def diffusion_term(eps_fn: EpsFn, gamma_fn: GammaFn, x0, rng_t, rng_eps, num_t: int = 1, times=None):
  """L_diffusion of x0 [B, ...] (float, any data), averaged over num_t stratified t per example
  (drawn from rng_t; or the given times [num_t, B]), each with its own eps (fold_in(rng_eps, j)) -> [B] nats."""
  ts = stratified_times(rng_t, x0.shape[0], num_t, x0.dtype) if times is None else times

  def one(k_t):
    k, t = k_t
    eps = jax.random.normal(jax.random.fold_in(rng_eps, k), x0.shape, x0.dtype)
    gamma, slope = gamma_and_slope(gamma_fn, t)
    return diffusion_loss(eps, eps_fn(q_sample(x0, gamma, eps), t), slope)

  if ts.shape[0] == 1:   # training: one t per example, no loop around the network
    diff = one((jnp.zeros((), jnp.int32), ts[0]))[None]
  else:
    diff = jax.lax.map(one, (jnp.arange(ts.shape[0]), ts))           # [num_t, B]
  return jnp.mean(diff, axis=0)


def gaussian_reconstruction_nll(z, gamma_0):
  """L_recon of continuous z [B, ...]: E_eps -log N(z; z_0 / alpha_0, exp(gamma_0) I), exactly
  D_z / 2 (1 + log 2 pi + gamma_0) nats -> [B] (gamma_0 a scalar)."""
  num = math.prod(z.shape[1:])
  return jnp.full(z.shape[:1], 0.5 * num * (1.0 + math.log(2.0 * math.pi)), z.dtype) + 0.5 * num * gamma_0


def continuous_vlb(eps_fn: EpsFn, gamma_fn: GammaFn, z, rng, *, num_t: int = 1, times=None):
  """The continuous-time bound on the density -log p(z) of continuous data z [B, ...] (float),
  per example, nats: {'prior', 'recon', 'diffusion'}, each [B] (see the module docstring).
  The diffusion term as `vlb`'s (the same keys for the same rng); the other two are exact."""
  rng_t, rng_eps, _ = jax.random.split(rng, 3)
  ends = gamma_fn(jnp.array([0.0, 1.0], z.dtype))
  return {"prior": prior_kl(z, ends[1]), "recon": gaussian_reconstruction_nll(z, ends[0]),
          "diffusion": diffusion_term(eps_fn, gamma_fn, z, rng_t, rng_eps, num_t, times)}


def ddim_schedule(gamma_fn: GammaFn, num_steps: int, dtype=jnp.float32) -> Schedule:
  """The discrete `Schedule` of S = num_steps equally spaced times t_i = (i + 1) / S, i = 0 .. S-1:
  alpha-bar_i = sigmoid(-gamma(t_i)), beta_i = 1 - alpha-bar_i / alpha-bar_{i-1} (alpha-bar_{-1} = 1),
  every other constant derived as `schedules.schedule_from_betas` does, in jnp, so a learned
  (traced) gamma works. `samplers.ddim_sample` over timesteps S-1 .. 0 of it, with the network
  called at t = (i + 1) / S, is DDIM on the continuous process (its last step ends at alpha-bar = 1)."""
  t = jnp.arange(1, num_steps + 1, dtype=dtype) / num_steps
  log_abar = jax.nn.log_sigmoid(-gamma_fn(t))                       # [S]
  abar = jnp.exp(log_abar)
  abar_prev = jnp.concatenate([jnp.ones((1,), dtype), abar[:-1]])
  betas = -jnp.expm1(log_abar - jnp.concatenate([jnp.zeros((1,), dtype), log_abar[:-1]]))
  alphas = 1.0 - betas
  one_minus = -jnp.expm1(log_abar)                                  # 1 - alpha-bar, accurate near 1
  post_var = betas * (1.0 - abar_prev) / one_minus
  floor = jnp.concatenate([post_var[1:2], post_var[1:]])            # index 0 := index 1 (Ho et al.)
  return Schedule(
      betas=betas, alphas=alphas, alpha_bars=abar, alpha_bars_prev=abar_prev, sqrt_alpha_bars=jnp.sqrt(abar),
      sqrt_one_minus_alpha_bars=jnp.sqrt(one_minus), log_one_minus_alpha_bars=jnp.log(one_minus),
      sqrt_recip_alpha_bars=jnp.exp(-0.5 * log_abar), sqrt_recipm1_alpha_bars=jnp.sqrt(one_minus / abar),
      posterior_variance=post_var, posterior_log_variance=jnp.log(floor),
      posterior_mean_coef1=betas * jnp.sqrt(abar_prev) / one_minus,
      posterior_mean_coef2=(1.0 - abar_prev) * jnp.sqrt(alphas) / one_minus,
      beta_log_variance=jnp.log(jnp.concatenate([post_var[1:2], betas[1:]])))


def sample_step(eps_fn: EpsFn, gamma_fn: GammaFn, z_t, s, t, noise):
  """Ancestral step z_t -> z_s (s < t scalars) of p(z_s | z_t) = q(z_s | z_t, x = x_hat):

    z_s = (alpha_s / alpha_t) (z_t - c sigma_t eps_hat) + sqrt(c) sigma_s noise,
    c = 1 - SNR(t) / SNR(s) = -expm1(gamma_s - gamma_t).
  z_t, noise [B, ...] -> [B, ...].
  """
  batch = z_t.shape[0]
  g = gamma_fn(jnp.stack([s, t]).astype(z_t.dtype))
  gamma_s, gamma_t = g[0], g[1]
  eps_hat = eps_fn(z_t, jnp.full((batch,), t, z_t.dtype))
  alpha_s, sigma_s = alpha_sigma(gamma_s)
  alpha_t, sigma_t = alpha_sigma(gamma_t)
  c = -jnp.expm1(gamma_s - gamma_t)
  return alpha_s / alpha_t * (z_t - c * sigma_t * eps_hat) + jnp.sqrt(c) * sigma_s * noise


def sample(eps_fn: EpsFn, gamma_fn: GammaFn, rng, shape, num_steps: int, dtype=jnp.float32):
  """Ancestral sampling z_1 ~ N(0, I) -> z_0 over t_i = i / S, i = S .. 1, in lax.scan; returns
  x_hat = z_0 / alpha_0 [B, ...] (the decoder's mean; `samplers.to_pixels` rounds it to a bin)."""
  rng_init, rng_steps = jax.random.split(rng)
  z = jax.random.normal(rng_init, shape, dtype)

  def body(z, i):
    noise = jax.random.normal(jax.random.fold_in(rng_steps, i), shape, dtype)
    t = i.astype(dtype) / num_steps
    s = (i - 1).astype(dtype) / num_steps
    return sample_step(eps_fn, gamma_fn, z, s, t, noise), None

  z, _ = jax.lax.scan(body, z, jnp.arange(num_steps, 0, -1, dtype=jnp.int32))
  alpha_0, _ = alpha_sigma(gamma_fn(jnp.zeros((1,), dtype)))
  return z / alpha_0[0]
