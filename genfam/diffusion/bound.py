"""The variational bound of a DDPM, per example, in nats (callers convert to bits/dim).

For integer data x in {0 .. K-1}^D mapped to bin centres x_0 on [-1, 1],

  -log p(x) <= L_prior + sum_{t=2}^{T} L_{t-1} + L_0          (nats)

  L_prior = KL(q(x_T | x_0) || N(0, I))
  L_{t-1} = E_q KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),  t = 2 .. T
  L_0     = E_q -log P(x | x_1),  P the discretized Gaussian N(mu(x_1), sigma_1^2)
            over K bins on [-1, 1] with open edge bins (`genfam.likelihood.discretized`)

with p(x_{t-1} | x_t) = N(mu(x_t, eps_theta(x_t, t)), Sigma_t), Sigma_t = sigma_t^2 I
fixed, or learned (Nichol & Dhariwal): log Sigma_t = v log beta_t + (1 - v) log beta-tilde_t
with v [B, ...] from the network (`schedules.LearnedVariance`). Each L term
is estimated with one draw of x_t ~ q(x_t | x_0); the sum over t is exact
(`exact_vlb`, all T terms, batched over t in chunks) or estimated without bias
from `num_t` uniformly sampled t (`sampled_vlb`): T * mean_k L_{t_k}.

Term index t (0 .. T-1) here is the schedule index: index 0 is L_0 (the
decoder), index t >= 1 is the KL of paper step t + 1. The bound is a discrete
log-likelihood of the K-bin data, so bits/dim = nats / (D log 2).
"""
from typing import Callable

import jax
import jax.numpy as jnp

from genfam.diffusion import process
from genfam.diffusion.schedules import Schedule
from genfam.likelihood.discretized import bin_centres, discretized_gaussian_log_prob

# (x_t [B, ...], t [B]) -> eps [B, ...], or (eps, v) [B, ...] each for a learned variance
EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


def normal_kl(mean1, log_var1, mean2, log_var2):
  """KL(N(mean1, e^log_var1) || N(mean2, e^log_var2)), elementwise, nats."""
  return 0.5 * (log_var2 - log_var1 + jnp.exp(log_var1 - log_var2)
                + (mean1 - mean2) ** 2 * jnp.exp(-log_var2) - 1.0)


def _sum_dims(v):  # [B, ...] -> [B]
  return jnp.sum(v.reshape(v.shape[0], -1), axis=-1)


def prior_kl(s: Schedule, x0):
  """L_prior = KL(q(x_T | x_0) || N(0, I)) per example: x0 [B, ...] -> [B] nats."""
  t_last = jnp.full((x0.shape[0],), s.num_steps - 1, jnp.int32)
  mean, log_var = process.q_mean_log_variance(s, x0, t_last)
  zero = jnp.zeros((), x0.dtype)
  return _sum_dims(normal_kl(mean, jnp.broadcast_to(log_var, mean.shape), zero, zero))


def decoder_nll(x_int, mean, log_var, num_bins: int):
  """L_0 = -log P(x | x_1) per example: x_int int [B, ...], mean [B, ...] -> [B] nats."""
  log_scale = 0.5 * jnp.broadcast_to(log_var, mean.shape)
  return -_sum_dims(discretized_gaussian_log_prob(x_int, mean, log_scale, num_bins))


def terms_from_prediction(s: Schedule, log_variance, x_int, x0, x_t, t, eps, v, num_bins: int,
                          clip_x0: bool = False):
  """The bound's term at t [B] given the model's prediction eps [B, ...] (and v [B, ...]
  for a learned variance, else None) at x_t [B, ...] -> [B] nats.

  t index 0 gives L_0 (decoder NLL), t >= 1 the KL between the true posterior
  and p(x_{t-1} | x_t) = N(mu(x_t, eps), Sigma) with log Sigma from
  `process.log_variance_at` (fixed [T] or learned range). The hybrid loss calls
  this with a stop-gradient eps, so its term trains only the variance.
  """
  mean, _ = process.reverse_mean(s, x_t, t, eps, clip_x0)
  log_var = jnp.broadcast_to(process.log_variance_at(log_variance, t, x0.ndim, v), mean.shape)
  true_mean, _, true_log_var = process.q_posterior(s, x0, x_t, t)
  kl = _sum_dims(normal_kl(true_mean, jnp.broadcast_to(true_log_var, mean.shape), mean, log_var))
  nll = decoder_nll(x_int, mean, log_var, num_bins)
  return jnp.where(t == 0, nll, kl)


def vlb_term(eps_fn: EpsFn, s: Schedule, log_variance, x_int, x0, t, noise, num_bins: int,
             clip_x0: bool = False):
  """One term of the bound per example at given t [B] and noise [B, ...] -> [B] nats.

  x_t = q_sample(x_0, t, noise); eps_fn(x_t, t) returns eps (fixed variance,
  log_variance [T] from `schedules.model_log_variance`) or (eps, v) (learned,
  log_variance a `schedules.LearnedVariance`); see `terms_from_prediction`.
  """
  x_t = process.q_sample(s, x0, t, noise)
  eps, v = process.split_output(eps_fn(x_t, t))
  return terms_from_prediction(s, log_variance, x_int, x0, x_t, t, eps, v, num_bins, clip_x0)


def _map_rows(row_fn, num_rows: int, chunk: int):
  """[num_rows, B] from row_fn(row index) -> [B]: vmap over `chunk` rows, lax.map over chunks."""
  chunk = max(1, min(chunk, num_rows))
  num_chunks = -(-num_rows // chunk)
  rows = jnp.arange(num_chunks * chunk, dtype=jnp.int32) % num_rows  # padded rows repeat, then dropped
  out = jax.lax.map(jax.vmap(row_fn), rows.reshape(num_chunks, chunk))  # [num_chunks, chunk, B]
  return out.reshape((num_chunks * chunk,) + out.shape[2:])[:num_rows]


def exact_vlb(eps_fn: EpsFn, s: Schedule, log_variance, x_int, rng, num_bins: int, *,
              chunk: int = 10, clip_x0: bool = False, dtype=jnp.float32):
  """The full bound with all T terms, per example, nats.

  x_int: int [B, ...] pixels in {0 .. K-1}. Term t uses x_t drawn with noise
  from fold_in(rng, t); `chunk` timesteps are evaluated at once (vmap), the
  chunks in sequence (lax.map), so memory is chunk x B network inputs.
  Returns {'prior': [B], 'terms': [T, B]} (terms[0] = L_0, terms[t] = KL).
  """
  x0 = bin_centres(x_int, num_bins, dtype)
  batch = x0.shape[0]

  def row(t):
    noise = jax.random.normal(jax.random.fold_in(rng, t), x0.shape, dtype)
    return vlb_term(eps_fn, s, log_variance, x_int, x0, jnp.full((batch,), t), noise, num_bins, clip_x0)

  return {"prior": prior_kl(s, x0), "terms": _map_rows(row, s.num_steps, chunk)}


def sampled_vlb(eps_fn: EpsFn, s: Schedule, log_variance, x_int, rng, num_bins: int, *,
                num_t: int, chunk: int = 10, clip_x0: bool = False, dtype=jnp.float32):
  """Unbiased estimate of the bound from num_t sampled t per example, nats.

  The decoder term L_0 (index 0) is computed exactly: it alone is a large
  share of the bound (~2 bits/dim early in training), and a uniform draw over
  {0 .. T-1} would miss it for most examples and hit it rarely with weight T,
  an unbiased but heavy-tailed estimate. The other terms are estimated from
  t_1 .. t_k drawn uniformly from {1 .. T-1} (with replacement, per example):
  sum_{t>=1} L_t ~ (T - 1) * mean_k L_{t_k}. The prior term is exact.
  Returns {'prior': [B], 'terms': [B]} (terms = L_0 + the estimate).
  """
  x0 = bin_centres(x_int, num_bins, dtype)
  rng_t, rng_noise = jax.random.split(rng)
  t_all = jnp.concatenate([jnp.zeros((1, x0.shape[0]), jnp.int32),
                           jax.random.randint(rng_t, (num_t, x0.shape[0]), 1, s.num_steps)])

  def row(k):
    noise = jax.random.normal(jax.random.fold_in(rng_noise, k), x0.shape, dtype)
    return vlb_term(eps_fn, s, log_variance, x_int, x0, t_all[k], noise, num_bins, clip_x0)

  terms = _map_rows(row, num_t + 1, chunk)  # [1 + num_t, B]: L_0, then the sampled t
  return {"prior": prior_kl(s, x0), "terms": terms[0] + (s.num_steps - 1) * jnp.mean(terms[1:], axis=0)}
