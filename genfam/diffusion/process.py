"""The forward process, its posterior, and the reverse mean from a predicted eps.

With x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps, eps ~ N(0, I):

  x_0 = x_t / sqrt(alpha-bar_t) - sqrt(1 / alpha-bar_t - 1) eps
  eps = (x_t / sqrt(alpha-bar_t) - x_0) / sqrt(1 / alpha-bar_t - 1)
  mu(x_t, eps) = (x_t - beta_t / sqrt(1 - alpha-bar_t) eps) / sqrt(alpha_t)
               = c1_t x_0(x_t, eps) + c2_t x_t    (the posterior mean at x_0-hat)

Timesteps t are int arrays [B] of indices 0 .. T-1 (paper steps 1 .. T);
images x are float [B, ...] on [-1, 1].
"""
import jax.numpy as jnp

from genfam.diffusion.schedules import LearnedVariance, Schedule


def extract(values: jnp.ndarray, t: jnp.ndarray, ndim: int) -> jnp.ndarray:
  """values[t] reshaped to broadcast against [B, ...] of rank ndim: [T], [B] -> [B, 1, ..]."""
  out = values[t]
  return out.reshape(out.shape + (1,) * (ndim - out.ndim))


def split_output(out):
  """A model's output -> (eps [B, ...], v [B, ...] or None): eps alone (fixed variance) or (eps, v)."""
  return tuple(out) if isinstance(out, tuple) else (out, None)


def log_variance_at(log_variance, t, ndim: int, v=None):
  """log sigma_t^2 of p(x_{t-1} | x_t), broadcastable to [B, ...].

  Fixed ([T] array): log_variance[t] as [B, 1, ..]. Learned (`LearnedVariance`):
  v log beta_t + (1 - v) log beta-tilde_t with v [B, ...] from the model.
  """
  if isinstance(log_variance, LearnedVariance):
    if v is None:
      raise ValueError("a learned variance needs the model to return (eps, v)")
    return v * extract(log_variance.max_log, t, ndim) + (1.0 - v) * extract(log_variance.min_log, t, ndim)
  return extract(log_variance, t, ndim)


def q_mean_log_variance(s: Schedule, x0, t):
  """q(x_t | x_0): mean [B, ...] and log variance [B, 1, ..]."""
  return (extract(s.sqrt_alpha_bars, t, x0.ndim) * x0,
          extract(s.log_one_minus_alpha_bars, t, x0.ndim))


def q_sample(s: Schedule, x0, t, noise):
  """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise; all [B, ...]."""
  return (extract(s.sqrt_alpha_bars, t, x0.ndim) * x0
          + extract(s.sqrt_one_minus_alpha_bars, t, x0.ndim) * noise)


def q_posterior(s: Schedule, x0, x_t, t):
  """q(x_{t-1} | x_t, x_0): mean [B, ...], variance and clipped log variance [B, 1, ..].

  At t index 0 the variance is 0 and the log variance is Ho et al.'s clipped
  value log beta-tilde_2.
  """
  n = x0.ndim
  mean = extract(s.posterior_mean_coef1, t, n) * x0 + extract(s.posterior_mean_coef2, t, n) * x_t
  return mean, extract(s.posterior_variance, t, n), extract(s.posterior_log_variance, t, n)


def predict_x0_from_eps(s: Schedule, x_t, t, eps):
  """x_0-hat = x_t / sqrt(alpha-bar_t) - sqrt(1 / alpha-bar_t - 1) eps; [B, ...]."""
  n = x_t.ndim
  return extract(s.sqrt_recip_alpha_bars, t, n) * x_t - extract(s.sqrt_recipm1_alpha_bars, t, n) * eps


def predict_eps_from_x0(s: Schedule, x_t, t, x0):
  """eps = (x_t / sqrt(alpha-bar_t) - x_0) / sqrt(1 / alpha-bar_t - 1); [B, ...]."""
  n = x_t.ndim
  return ((extract(s.sqrt_recip_alpha_bars, t, n) * x_t - x0)
          / extract(s.sqrt_recipm1_alpha_bars, t, n))


def reverse_mean_from_eps(s: Schedule, x_t, t, eps):
  """mu(x_t, eps) = (x_t - beta_t / sqrt(1 - alpha-bar_t) eps) / sqrt(alpha_t); [B, ...]."""
  n = x_t.ndim
  coef = extract(s.betas / s.sqrt_one_minus_alpha_bars, t, n)
  return (x_t - coef * eps) / jnp.sqrt(extract(s.alphas, t, n))


def reverse_mean(s: Schedule, x_t, t, eps, clip_x0: bool = False):
  """Mean of p(x_{t-1} | x_t) and the x_0-hat it came from; both [B, ...].

  mean = c1_t x_0-hat + c2_t x_t, which equals `reverse_mean_from_eps` unless
  clip_x0 clips x_0-hat to [-1, 1] first (a different but equally valid
  reverse process; the bound stays a bound).
  """
  x0 = predict_x0_from_eps(s, x_t, t, eps)
  if clip_x0:
    x0 = jnp.clip(x0, -1.0, 1.0)
  mean, _, _ = q_posterior(s, x0, x_t, t)
  return mean, x0
