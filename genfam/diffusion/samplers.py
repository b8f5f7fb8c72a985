"""Samplers: DDPM ancestral, DDIM; classifier-free, classifier and CLIP guidance. Loops run in lax.scan.

DDPM (Ho et al.), for t = T .. 1:
  x_{t-1} = mu(x_t, eps_theta(x_t, t)) + sigma_t z,   z ~ N(0, I), no noise at t = 1,
with sigma_t^2 the fixed variance (beta_t or beta-tilde_t), or the learned
Sigma_t = exp(v log beta_t + (1 - v) log beta-tilde_t) of a model returning (eps, v).

DDIM (Song et al.), over a decreasing subsequence tau_S > .. > tau_1 of the
T steps, with tau_0 := "step 0" where alpha-bar = 1:
  x_0-hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)           a_t = alpha-bar_t
  sigma   = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)
  x_prev  = sqrt(a_prev) x_0-hat + sqrt(1 - a_prev - sigma^2) eps + sigma z.
eta = 0 is deterministic; eta = 1 with S = T is DDPM with sigma_t^2 = beta-tilde_t.
With a learned variance (`log_variance` a `schedules.LearnedVariance`, the model
returning (eps, v)), v interpolates the same two endpoints over the stride t -> prev,
  sigma^2 = eta^2 exp(v log beta_{t|prev} + (1 - v) log beta-tilde_{t|prev}),
  beta_{t|prev} = 1 - a_t / a_prev,  beta-tilde_{t|prev} = (1 - a_prev) / (1 - a_t) beta_{t|prev}
(the endpoints of a respaced schedule, as improved DDPM samples with fewer steps);
v = 0 is Song et al.'s DDIM above, and no noise is added on the last step.

Both samplers draw x_T from key split(rng)[0] and the step noise at timestep
index t from fold_in(split(rng)[1], t), so they consume the same noise at the
same t. Timesteps are schedule indices 0 .. T-1 (paper steps 1 .. T).

Classifier-free guidance: eps = eps(x, t, null) + w (eps(x, t, c) - eps(x, t, null));
w = 0 is the unconditional model, w = 1 the conditional one. A learned variance's
v comes from the conditional call (as GLIDE does).

Gradient guidance (Dhariwal & Nichol; GLIDE's CLIP guidance): a `Guidance(grad_fn, scale)`,
g = grad_x log f(x_t, t) from a noise-conditional model (log p(y | x_t) of a classifier, or
CLIP's s_clip <v(x_t, t), e(caption)>), and a scale s:
  DDPM (their Algorithm 1): x_{t-1} ~ N(mu + s Sigma_t g, Sigma_t)   (Sigma_t the step's variance,
                            learned or fixed; applied on every step, the last one included);
  DDIM (their Algorithm 2): eps-hat = eps - sqrt(1 - a_t) s g, then the DDIM step with eps-hat.
With s = 1 and f = p(y | x_t), eps-hat = -sqrt(1 - a_t) grad log p(x_t | y): the exact
conditional score when eps is the exact score, so DDIM then samples p(x_0 | y) up to
discretization. s = 0 is the unguided step.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from genfam.diffusion import process
from genfam.diffusion.schedules import LearnedVariance, Schedule

SAMPLERS = ("ddpm", "ddim")
SPACINGS = ("linspace", "leading", "trailing")
EpsFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t [B, ...], t [B] int) -> eps [B, ...] or (eps, v)


def ddim_timesteps(num_steps: int, num_sample_steps: int, spacing: str) -> np.ndarray:
  """The S schedule indices DDIM visits, in sampling (decreasing) order: int [S].

  With T = num_steps, S = num_sample_steps:
    'linspace': round(linspace(0, T - 1, S))   (np.round: halves go to even)
    'leading':  (T // S) * [0, 1, .., S - 1]   (never visits T - 1 unless S = T)
    'trailing': round(T - i T / S) - 1, i = 0 .. S - 1   (always starts at T - 1)
  e.g. T = 10, S = 3: linspace [9, 4, 0], leading [6, 3, 0], trailing [9, 6, 2].
  """
  T, S = num_steps, num_sample_steps
  if not 1 <= S <= T:
    raise ValueError(f"DDIM needs 1 <= steps <= T = {T}, got {S}")
  if spacing == "linspace":
    ts = np.round(np.linspace(0.0, T - 1, S))
  elif spacing == "leading":
    ts = np.arange(S) * (T // S)
  elif spacing == "trailing":
    ts = np.round(T - np.arange(S) * (T / S)) - 1
  else:
    raise ValueError(f"unknown DDIM spacing {spacing!r}; use one of {SPACINGS}")
  ts = np.sort(ts.astype(np.int64))[::-1].copy()
  assert len(np.unique(ts)) == S and ts[0] <= T - 1 and ts[-1] >= 0, ts
  return ts


def guided_eps_fn(eps_fn_c: Callable, condition, null_condition, weight: float) -> EpsFn:
  """Classifier-free guidance: eps_fn_c(x, t, c) -> (x, t) -> eps_null + w (eps_c - eps_null).

  condition / null_condition: [B] labels, [B, E] text embeddings, or whatever eps_fn_c
  takes (None for a null embedding).
  weight 1 calls only the conditional model (the same eps, one network call).
  """
  if weight == 1.0:
    return lambda x, t: eps_fn_c(x, t, condition)

  def eps_fn(x, t):
    eps_null, _ = process.split_output(eps_fn_c(x, t, null_condition))
    eps_c, v_c = process.split_output(eps_fn_c(x, t, condition))
    eps = eps_null + weight * (eps_c - eps_null)
    return eps if v_c is None else (eps, v_c)

  return eps_fn


class Guidance(NamedTuple):
  """Gradient guidance: grad_fn(x [B, ...], t [B] int) -> grad_x log f [B, ...]; scale s (a float
  or a traced scalar)."""
  grad_fn: Callable[[jax.Array, jax.Array], jax.Array]
  scale: float


def log_density_gradient(log_f: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable:
  """(x, t) -> grad_x sum_b log_f(x, t)[b], i.e. each example's own gradient [B, ...] when log_f
  [B] treats the examples independently (no batch statistics)."""
  return lambda x, t: jax.grad(lambda x_: jnp.sum(log_f(x_, t)))(x)


def gradient_guided_eps_fn(eps_fn: EpsFn, s: Schedule, guidance: Guidance) -> EpsFn:
  """DDIM's guided eps: (x, t) -> eps - sqrt(1 - a_t) s grad_fn(x, t) (a learned variance's v passes)."""
  def eps_fn_guided(x, t):
    eps, v = process.split_output(eps_fn(x, t))
    shift = process.extract(s.sqrt_one_minus_alpha_bars, t, x.ndim) * guidance.grad_fn(x, t)
    eps = eps - jnp.asarray(guidance.scale, eps.dtype) * shift.astype(eps.dtype)
    return eps if v is None else (eps, v)

  return eps_fn_guided


def _step_keys(rng):
  rng_init, rng_steps = jax.random.split(rng)
  return rng_init, rng_steps


def initial_noise(rng, shape, dtype=jnp.float32):
  """x_T ~ N(0, I) as both samplers draw it from `rng`: [B, ...]."""
  return jax.random.normal(_step_keys(rng)[0], shape, dtype)


def ddpm_step(eps_fn: EpsFn, s: Schedule, log_variance, x, t, noise, clip_x0: bool = False,
              guidance: Guidance | None = None):
  """x_{t-1} from x_t at scalar index t: [B, ...] -> [B, ...]; with `guidance`, the mean
  shifted by s Sigma_t grad_fn(x_t, t)."""
  tb = jnp.full((x.shape[0],), t, jnp.int32)
  eps, v = process.split_output(eps_fn(x, tb))
  mean, _ = process.reverse_mean(s, x, tb, eps, clip_x0)
  log_var = process.log_variance_at(log_variance, tb, x.ndim, v)
  if guidance is not None:
    shift = jnp.exp(log_var) * guidance.grad_fn(x, tb)
    mean = mean + (jnp.asarray(guidance.scale, x.dtype) * shift).astype(x.dtype)
  scale = jnp.where(t > 0, jnp.exp(0.5 * log_var), 0.0).astype(x.dtype)
  return mean + scale * noise


def ddpm_sample(eps_fn: EpsFn, s: Schedule, log_variance, rng, shape, *, clip_x0: bool = False,
                x_T=None, dtype=jnp.float32, return_trajectory: bool = False,
                guidance: Guidance | None = None):
  """DDPM ancestral sampling over all T steps: -> x_0 float [B, ...] (and [T, B, ...] trajectory).

  log_variance: [T] log sigma_t^2, or a `LearnedVariance` (`schedules.model_log_variance`).
  x_T: optional starting noise; default drawn from rng. guidance: optional gradient guidance.
  """
  rng_init, rng_steps = _step_keys(rng)
  x = jax.random.normal(rng_init, shape, dtype) if x_T is None else x_T

  def body(x, t):
    noise = jax.random.normal(jax.random.fold_in(rng_steps, t), x.shape, x.dtype)
    x = ddpm_step(eps_fn, s, log_variance, x, t, noise, clip_x0, guidance)
    return x, (x if return_trajectory else None)

  x, traj = jax.lax.scan(body, x, jnp.arange(s.num_steps - 1, -1, -1, dtype=jnp.int32))
  return (x, traj) if return_trajectory else x


def ddim_step(eps_fn: EpsFn, s: Schedule, x, t, t_prev, noise, eta: float, clip_x0: bool = False,
              log_variance=None, guidance: Guidance | None = None):
  """One DDIM step from index t to t_prev (< t; -1 = the end, alpha-bar = 1): [B, ...].

  log_variance: None (or fixed: unused) for Song et al.'s sigma; a `LearnedVariance`
  for a model returning (eps, v) (see the module docstring). guidance: eps shifted by
  -sqrt(1 - a_t) s grad_fn(x_t, t) before x_0-hat is formed.
  """
  if guidance is not None:
    eps_fn = gradient_guided_eps_fn(eps_fn, s, guidance)
  tb = jnp.full((x.shape[0],), t, jnp.int32)
  eps, v = process.split_output(eps_fn(x, tb))
  x0 = process.predict_x0_from_eps(s, x, tb, eps)
  if clip_x0:  # keep eps consistent with the clipped x_0-hat
    x0 = jnp.clip(x0, -1.0, 1.0)
    eps = process.predict_eps_from_x0(s, x, tb, x0)
  a_t = s.alpha_bars[t]
  a_prev = jnp.where(t_prev >= 0, s.alpha_bars[jnp.maximum(t_prev, 0)], 1.0).astype(a_t.dtype)
  if isinstance(log_variance, LearnedVariance):
    if v is None:
      raise ValueError("a learned variance needs the model to return (eps, v)")
    beta = 1.0 - a_t / a_prev
    beta_tilde = jnp.maximum((1.0 - a_prev) / (1.0 - a_t) * beta, jnp.finfo(a_t.dtype).tiny)
    log_var = v * jnp.log(beta) + (1.0 - v) * jnp.log(beta_tilde)      # [B, ...]
    sigma = jnp.where(t_prev >= 0, eta * jnp.exp(0.5 * log_var), 0.0).astype(x.dtype)
  else:
    sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
  direction = jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma ** 2, 0.0))
  return jnp.sqrt(a_prev) * x0 + direction * eps + sigma * noise


def ddim_sample(eps_fn: EpsFn, s: Schedule, timesteps, rng, shape, *, eta: float = 0.0,
                clip_x0: bool = False, x_T=None, dtype=jnp.float32, return_trajectory: bool = False,
                log_variance=None, guidance: Guidance | None = None):
  """DDIM over `timesteps` (int [S], decreasing, from `ddim_timesteps`): -> x_0 [B, ...].

  With return_trajectory, also the [S, B, ...] states after each step;
  log_variance: a `LearnedVariance` for a model returning (eps, v), else None;
  guidance: optional gradient guidance.
  """
  ts = np.asarray(timesteps, np.int32)
  prev = np.append(ts[1:], -1).astype(np.int32)
  rng_init, rng_steps = _step_keys(rng)
  x = jax.random.normal(rng_init, shape, dtype) if x_T is None else x_T

  def body(x, tt):
    t, t_prev = tt
    noise = jax.random.normal(jax.random.fold_in(rng_steps, t), x.shape, x.dtype)
    x = ddim_step(eps_fn, s, x, t, t_prev, noise, eta, clip_x0, log_variance, guidance)
    return x, (x if return_trajectory else None)

  x, traj = jax.lax.scan(body, x, (jnp.asarray(ts), jnp.asarray(prev)))
  return (x, traj) if return_trajectory else x


def to_pixels(x, num_bins: int) -> jax.Array:
  """x on [-1, 1] -> nearest bin in {0 .. K-1}: float [B, ...] -> uint8 [B, ...]."""
  k = jnp.round((x + 1.0) * (0.5 * (num_bins - 1)))
  return jnp.clip(k, 0, num_bins - 1).astype(jnp.uint8)
