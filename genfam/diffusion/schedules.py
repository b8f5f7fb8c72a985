"""Noise schedules and every per-step constant derived from them.

A schedule is a sequence beta_1 .. beta_T in (0, 1); with alpha_t = 1 - beta_t
and alpha-bar_t = prod_{s<=t} alpha_s,

  q(x_t | x_0)          = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I)
  q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, beta-tilde_t I)
     c1_t = beta_t sqrt(alpha-bar_{t-1}) / (1 - alpha-bar_t)
     c2_t = (1 - alpha-bar_{t-1}) sqrt(alpha_t) / (1 - alpha-bar_t)
     beta-tilde_t = beta_t (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t)
  with alpha-bar_0 = 1, so beta-tilde_1 = 0.

Ho et al. handle the zero posterior variance at t = 1 by "clipping" its log:
log beta-tilde is taken as log beta-tilde_2 at t = 1 (it is only ever used as
the variance of the decoder p(x_0 | x_1), never as a KL target).

Everything is computed in float64 numpy and cast once to the requested dtype.
Arrays are indexed t = 0 .. T-1 for the paper's steps 1 .. T (see __init__).
"""
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

SCHEDULES = ("linear", "cosine")
VARIANCES = ("beta", "posterior", "learned")
FIXED_VARIANCES = ("beta", "posterior")
MAX_BETA = 0.999


class Schedule(NamedTuple):
  """Per-step constants, each [T] in one float dtype (a pytree of arrays)."""
  betas: jnp.ndarray
  alphas: jnp.ndarray
  alpha_bars: jnp.ndarray                 # alpha-bar_t
  alpha_bars_prev: jnp.ndarray            # alpha-bar_{t-1}; [0] = 1
  sqrt_alpha_bars: jnp.ndarray
  sqrt_one_minus_alpha_bars: jnp.ndarray
  log_one_minus_alpha_bars: jnp.ndarray
  sqrt_recip_alpha_bars: jnp.ndarray      # 1 / sqrt(alpha-bar_t)
  sqrt_recipm1_alpha_bars: jnp.ndarray    # sqrt(1 / alpha-bar_t - 1)
  posterior_variance: jnp.ndarray         # beta-tilde_t; [0] = 0
  posterior_log_variance: jnp.ndarray     # log beta-tilde_t, [0] := log beta-tilde_2 (Ho et al.)
  posterior_mean_coef1: jnp.ndarray       # c1_t (multiplies x_0)
  posterior_mean_coef2: jnp.ndarray       # c2_t (multiplies x_t)
  beta_log_variance: jnp.ndarray          # log beta_t, [0] := log beta-tilde_2 (Ho et al.'s "fixedlarge")

  @property
  def num_steps(self) -> int:
    return int(self.betas.shape[0])


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
  """Ho et al.'s linear schedule, [T] float64.

  The endpoints are given for T = 1000 and scaled by 1000 / T (Nichol &
  Dhariwal), so any T ends with a similar alpha-bar_T; clipped at 0.999.
  """
  scale = 1000.0 / num_steps
  betas = np.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=np.float64)
  return np.minimum(betas, MAX_BETA)


def cosine_betas(num_steps: int, offset: float = 0.008) -> np.ndarray:
  """Nichol & Dhariwal's cosine schedule, [T] float64.

  alpha-bar(t) = f(t) / f(0), f(t) = cos(((t / T + s) / (1 + s)) pi / 2)^2,
  beta_t = min(1 - alpha-bar(t) / alpha-bar(t - 1), 0.999).
  """
  f = lambda u: np.cos((u / num_steps + offset) / (1.0 + offset) * math.pi / 2.0) ** 2
  t = np.arange(num_steps + 1, dtype=np.float64)
  alpha_bar = f(t) / f(0.0)
  return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)


def betas_for(name: str, num_steps: int) -> np.ndarray:
  """[T] float64 betas of schedule `name` ('linear' or 'cosine')."""
  if num_steps < 2:
    raise ValueError(f"diffusion needs T >= 2 steps, got {num_steps}")
  if name == "linear":
    return linear_betas(num_steps)
  if name == "cosine":
    return cosine_betas(num_steps)
  raise ValueError(f"unknown noise schedule {name!r}; use one of {SCHEDULES}")


def schedule_from_betas(betas, dtype=jnp.float32) -> Schedule:
  """All per-step constants from betas [T], computed in float64, cast to dtype."""
  b = np.asarray(betas, dtype=np.float64)
  if b.ndim != 1 or b.shape[0] < 2 or np.any(b <= 0) or np.any(b >= 1):
    raise ValueError("betas must be a [T] vector in (0, 1) with T >= 2")
  alphas = 1.0 - b
  abar = np.cumprod(alphas)
  abar_prev = np.append(1.0, abar[:-1])
  post_var = b * (1.0 - abar_prev) / (1.0 - abar)
  post_log_var = np.log(np.append(post_var[1], post_var[1:]))
  beta_log_var = np.log(np.append(post_var[1], b[1:]))
  cast = lambda a: jnp.asarray(a, dtype=dtype)
  return Schedule(
      betas=cast(b), alphas=cast(alphas), alpha_bars=cast(abar), alpha_bars_prev=cast(abar_prev),
      sqrt_alpha_bars=cast(np.sqrt(abar)), sqrt_one_minus_alpha_bars=cast(np.sqrt(1.0 - abar)),
      log_one_minus_alpha_bars=cast(np.log(1.0 - abar)),
      sqrt_recip_alpha_bars=cast(np.sqrt(1.0 / abar)),
      sqrt_recipm1_alpha_bars=cast(np.sqrt(1.0 / abar - 1.0)),
      posterior_variance=cast(post_var), posterior_log_variance=cast(post_log_var),
      posterior_mean_coef1=cast(b * np.sqrt(abar_prev) / (1.0 - abar)),
      posterior_mean_coef2=cast((1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar)),
      beta_log_variance=cast(beta_log_var))


class LearnedVariance(NamedTuple):
  """Nichol & Dhariwal's learned range, the endpoints of the interpolation, each [T]:

    log Sigma_t = v log beta_t + (1 - v) log beta-tilde_t,   v in [0, 1] per pixel from the network,

  with Ho et al.'s convention at index 0 (both endpoints log beta-tilde_2), so
  v = 1 is exactly the fixed 'beta' variance and v = 0 exactly 'posterior', and
  the decoder's variance (index 0) is not learned. A model with a learned
  variance returns (eps, v) where a fixed-variance one returns eps.
  """
  max_log: jnp.ndarray   # log beta_t ('beta'), [0] := log beta-tilde_2
  min_log: jnp.ndarray   # log beta-tilde_t ('posterior'), [0] := log beta-tilde_2


def make_schedule(name: str, num_steps: int, dtype=jnp.float32) -> Schedule:
  """Schedule `name` with T = num_steps."""
  return schedule_from_betas(betas_for(name, num_steps), dtype)


def model_log_variance(schedule: Schedule, variance: str):
  """log sigma_t^2 [T] of the fixed reverse-process variance, or the learned range.

  'posterior': sigma_t^2 = beta-tilde_t (the lower choice; Ho's "fixedsmall").
  'beta':      sigma_t^2 = beta_t (the upper choice; Ho's "fixedlarge").
  Both use beta-tilde_2 at t = 1, where sigma_1 is the decoder's scale.
  'learned':   a `LearnedVariance` (the two arrays above as endpoints).
  """
  if variance == "learned":
    return LearnedVariance(max_log=schedule.beta_log_variance, min_log=schedule.posterior_log_variance)
  if variance == "posterior":
    return schedule.posterior_log_variance
  if variance == "beta":
    return schedule.beta_log_variance
  raise ValueError(f"unknown variance {variance!r}; use one of {VARIANCES}")
