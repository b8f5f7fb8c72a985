"""Training objectives of a DDPM: L_simple, the hybrid loss of improved DDPM, and
importance-sampled t for the bound (Nichol & Dhariwal 2021), as plain array functions.

Per example, with t a schedule index (0 .. T-1), x_t = q_sample(x_0, t, eps):

  L_simple = mean_pixels ||eps - eps_theta(x_t, t)||^2
  L_t      = the bound's term at t (`bound.terms_from_prediction`), in nats; here
             divided by D log 2 (bits/dim), as in improved DDPM's code
  L_hybrid = L_simple + lambda T L_t(sg(eps_theta), v_theta)

T L_t with t ~ U{0 .. T-1} is an unbiased estimate of the bound's diffusion +
decoder terms L_vlb, so lambda T L_t estimates lambda L_vlb (lambda = 0.001,
T = 1000: weight 1 on L_t in bits/dim). sg is the stop-gradient: the L_vlb
term trains only the variance v; the mean stays trained by L_simple alone.
Objective 'vlb' is T L_t without the stop-gradient (the bound itself).

Importance sampling (the paper's Sec. 3.3): t ~ p_t with p_t proportional to
sqrt(E[L_t^2]), E[L_t^2] from the last `history` values of L_t seen at each t
(kept in the train state), and each example's loss weighted 1 / (T p_t) so the
objective's expectation is that of uniform t. Until every t has `history`
values, t is uniform. p_t is mixed with uniform_prob / T (as improved DDPM's
code) so no t is starved.
"""
import jax
import jax.numpy as jnp

from genfam.diffusion import bound, process
from genfam.diffusion.schedules import Schedule

OBJECTIVES = ("simple", "hybrid", "vlb")
T_SAMPLING = ("uniform", "importance")


def mse_per_example(eps, noise):
  """mean over pixels of (eps - noise)^2: [B, ...] -> [B]."""
  return jnp.mean(((eps - noise) ** 2).reshape(eps.shape[0], -1), axis=-1)


def vlb_term_bpd(s: Schedule, log_variance, x_int, x0, x_t, t, eps, v, num_bins: int,
                 stop_gradient_mean: bool):
  """L_t of the bound in bits/dim ([B]); with stop_gradient_mean the mean's eps is
  held constant, so only v (the learned variance) gets gradient from it."""
  if stop_gradient_mean:
    eps = jax.lax.stop_gradient(eps)
  nats = bound.terms_from_prediction(s, log_variance, x_int, x0, x_t, t, eps, v, num_bins, False)
  return nats / (x0[0].size * jnp.log(2.0))


def objective(kind: str, s: Schedule, log_variance, x_int, x0, x_t, t, noise, model_out, num_bins: int,
              hybrid_lambda: float = 1e-3):
  """Per-example loss [B] and its L_t [B] (bits/dim) for objective `kind`.

  model_out: eps [B, ...] or (eps, v) from the network at (x_t, t).
  'simple': L_simple; 'hybrid': L_simple + lambda T L_t(sg(eps), v); 'vlb': T L_t.
  """
  eps, v = process.split_output(model_out)
  mse = mse_per_example(eps, noise)
  if kind == "simple":
    return mse, jnp.zeros_like(mse)
  l_t = vlb_term_bpd(s, log_variance, x_int, x0, x_t, t, eps, v, num_bins,
                     stop_gradient_mean=(kind == "hybrid"))
  if kind == "hybrid":
    return mse + hybrid_lambda * s.num_steps * l_t, l_t
  if kind == "vlb":
    return s.num_steps * l_t, l_t
  raise ValueError(f"unknown diffusion objective {kind!r}; use one of {OBJECTIVES}")


def init_history(num_steps: int, history: int = 10) -> dict:
  """The loss-squared history: {'values': [T, history] float32, 'counts': [T] int32}."""
  return {"values": jnp.zeros((num_steps, history), jnp.float32),
          "counts": jnp.zeros((num_steps,), jnp.int32)}


def t_probabilities(hist: dict, uniform_prob: float = 1e-3):
  """p_t [T]: uniform until every t has a full history, then
  (1 - u) sqrt(mean L_t^2) / sum + u / T."""
  values, counts = hist["values"], hist["counts"]
  num_steps, size = values.shape
  uniform = jnp.full((num_steps,), 1.0 / num_steps, jnp.float32)
  rms = jnp.sqrt(jnp.mean(values ** 2, axis=-1))
  weighted = (1.0 - uniform_prob) * rms / jnp.maximum(jnp.sum(rms), 1e-30) + uniform_prob / num_steps
  return jnp.where(jnp.all(counts >= size), weighted, uniform)


def sample_t(rng, probs, batch: int):
  """t [B] ~ p_t and the importance weights 1 / (T p_t) [B]."""
  t = jax.random.choice(rng, probs.shape[0], (batch,), p=probs)
  return t.astype(jnp.int32), 1.0 / (probs.shape[0] * probs[t])


def update_history(hist: dict, t, losses) -> dict:
  """Appends loss [B] at t [B] to each t's history in batch order (the oldest value
  leaves a full history)."""
  size = hist["values"].shape[1]

  def add(i, h):
    values, counts = h["values"], h["counts"]
    ti, li = t[i], jax.lax.stop_gradient(losses[i]).astype(values.dtype)
    row = values[ti]
    full = counts[ti] >= size
    shifted = jnp.where(full, jnp.roll(row, -1), row)
    slot = jnp.where(full, size - 1, counts[ti])
    values = values.at[ti].set(shifted.at[slot].set(li))
    return {"values": values, "counts": counts.at[ti].set(jnp.minimum(counts[ti] + 1, size))}

  return jax.lax.fori_loop(0, t.shape[0], add, hist)
