"""Annealed importance sampling (Neal 2001) for decoder-based models, with BlackJAX HMC.

The model is a latent-variable density p(y, z) = p(z) p(y | z) with the prior
p(z) = N(0, I_L) and a log-likelihood log p(y | z) passed in as a function (a
GAN's Gaussian observation model N(g(z), sigma^2 I), a VAE's discrete pixel
decoder, a linear-Gaussian test model). AIS estimates the marginal
p(y) = int p(z) p(y | z) dz, following Wu, Burda, Salakhutdinov and Grosse
(2017), "On the Quantitative Analysis of Decoder-Based Generative Models".

Intermediate densities, 0 = beta_0 < beta_1 < ... < beta_T = 1:
  f_t(z) = p(z) p(y | z)^beta_t,   f_0 = p(z) (normalised), Z_T = p(y).
Forward AIS, one chain: z_0 ~ p(z); for t = 1 .. T
  log w += (beta_t - beta_{t-1}) log p(y | z_{t-1});   z_t ~ K_t(z_{t-1}, .)
with K_t an HMC kernel leaving f_t / Z_t invariant. E[w] = p(y) (unbiased), so
by Jensen E[log w] <= log p(y): the estimate is a stochastic LOWER bound on
log p(y). Independent chains c = 1..C are combined as
  log p-hat(y) = log (1/C) sum_c w_c        (still a stochastic lower bound,
                                             tighter as C grows).
Reverse AIS (bidirectional Monte Carlo, Grosse et al. 2015): the same
recursion with the schedule run from beta = 1 down to 0, started from an
EXACT posterior sample z ~ p(z | y) (available for data simulated from the
model: the z that generated y). Its weight has E[w_rev] = 1 / p(y), so
  -log (1/C) sum_c w_rev,c  is a stochastic UPPER bound on log p(y).
The two bracket log p(y); their gap shrinks to 0 as T grows, and measures how
far the forward estimate can be from the truth on such data.

Schedule: the sigmoid schedule of Grosse et al. (2013):
  beta_t ∝ sigmoid(delta (2t/T - 1)), rescaled affinely so beta_0 = 0, beta_T = 1.

Transitions: BlackJAX's HMC kernel (`blackjax.mcmc.hmc.build_kernel`), identity
mass matrix, `num_leapfrog` leapfrog steps, one kernel application per beta_t.

Step size and why the estimator stays valid. An HMC kernel whose step size
depends on the chain's own current state is NOT in general invariant for its
target (the step size after "accepted" or "rejected" is then a function of
where the chain is), so adapting a chain's step size from its own acceptances
biases AIS. Here every example runs `num_chains` estimating chains plus
`adapt_chains` pilot chains in the same scan. The step size used at beta_t by
ALL chains of an example is
  log eps_{t+1} = log eps_t + adapt_rate * (mean_pilot acceptance_t - target_accept),
computed from that example's pilot chains only. The estimating chains'
kernels are therefore a function of the pilot chains' randomness alone, which
is independent of theirs: conditional on the pilots each estimating chain is
plain AIS with a fixed sequence of invariant kernels, hence unbiased. The
pilot chains' weights are discarded. With adapt_chains = 0 the step size is
fixed at `step_size`. Cost: (num_chains + adapt_chains) chains per example.

Everything is batched over examples and chains ([B, C] chains flattened,
`vmap`) inside one `lax.scan` over the T transitions; memory is one
transition's, whatever T.

Units: all log-densities in nats.
"""
import math
from typing import Any, Callable, NamedTuple, Optional

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

# log p(y | z) of one example: (z [L], datum pytree of one example) -> scalar (nats).
LogLikelihoodFn = Callable[[jax.Array, Any], jax.Array]


def sigmoid_schedule(num_steps: int, delta: float = 4.0) -> np.ndarray:
  """Betas [T + 1], float64, beta_0 = 0 < ... < beta_T = 1 (Grosse et al. 2013):
  s_t = sigmoid(delta (2t/T - 1)), beta_t = (s_t - s_0) / (s_T - s_0)."""
  if num_steps < 1:
    raise ValueError(f"AIS needs at least one intermediate step, got num_steps={num_steps}")
  t = np.arange(num_steps + 1, dtype=np.float64)
  s = 1.0 / (1.0 + np.exp(-delta * (2.0 * t / num_steps - 1.0)))
  return (s - s[0]) / (s[-1] - s[0])


def standard_normal_log_prob(z):  # [..., L] -> [...]
  """log N(z; 0, I) summed over the last axis (nats)."""
  return -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * z.shape[-1] * math.log(2.0 * math.pi)


def log_mean_exp(x, axis: int = -1):
  """log (1/n) sum exp(x) along `axis`."""
  return jax.nn.logsumexp(x, axis=axis) - math.log(x.shape[axis])


class AISResult(NamedTuple):
  """Per-example output of `ais` (B examples, C estimating chains).

  log_weights: [B, C] log w of each estimating chain (nats).
  log_estimate: [B] log (1/C) sum_c w_c: forward -> estimate of log p(y)
                (stochastic lower bound); reverse -> estimate of -log p(y)
                (so -log_estimate is a stochastic upper bound on log p(y)).
  acceptance: [B] mean HMC acceptance probability of the estimating chains over all T transitions.
  step_size: [B] the step size of the last transition.
  z: [B, C, L] the estimating chains' final states (approximate posterior samples after forward AIS).
  """
  log_weights: jax.Array
  log_estimate: jax.Array
  acceptance: jax.Array
  step_size: jax.Array
  z: jax.Array


def ais(log_likelihood_fn: LogLikelihoodFn, data, latent_dim: int, rng: jax.Array, *,
        betas, num_chains: int, init_z: Optional[jax.Array] = None, num_leapfrog: int = 10,
        step_size: float = 0.05, adapt_chains: int = 1, target_accept: float = 0.65,
        adapt_rate: float = 0.05, dtype=jnp.float32) -> AISResult:
  """AIS over the schedule `betas` [T + 1] for B examples at once.

  log_likelihood_fn(z [L], datum) -> log p(y | z) of one example (nats);
  data: a pytree whose leaves have a leading axis B (the examples, e.g. the
  image y [B, D] and its condition); init_z: None for forward AIS (each chain
  starts from the prior N(0, I)), or the chains' starting points: [B, L] shared
  by the chains of an example (reverse AIS from exact posterior samples; pass
  betas running from 1 to 0) or [B, num_chains + adapt_chains, L] (e.g. prior
  draws made by the caller, so that one compiled function serves both directions).
  The log weight accumulates (beta_t - beta_{t-1}) log p(y | z) and each step
  applies one HMC transition for f_t; see the module docstring for the
  estimator, the bounds and the step-size adaptation through pilot chains.
  """
  betas = jnp.asarray(betas, dtype)
  batch = jax.tree.leaves(data)[0].shape[0]
  chains = num_chains + adapt_chains                                   # per example
  n = batch * chains
  k_init, k_run = jax.random.split(rng)
  if init_z is None:
    z = jax.random.normal(k_init, (batch, chains, latent_dim), dtype)   # [B, C', L]
  else:
    z = jnp.asarray(init_z, dtype)
    z = jnp.broadcast_to(z[:, None] if z.ndim == 2 else z, (batch, chains, latent_dim))
  z = z.reshape(n, latent_dim)                                         # [N, L]
  flat_data = jax.tree.map(lambda a: jnp.repeat(a, chains, axis=0), data)   # leaves [N, ...]
  ll_and_grad = jax.vmap(jax.value_and_grad(log_likelihood_fn))      # ([N, L], data) -> [N], [N, L]
  ll, ll_grad = ll_and_grad(z, flat_data)
  kernel = blackjax.mcmc.hmc.build_kernel()
  inverse_mass = jnp.ones((latent_dim,), dtype)

  def transition(key, z, ll, ll_grad, datum, eps, beta):
    """One HMC step for f_beta of one chain -> (new z, acceptance probability, new HMC state)."""
    def log_density(q):
      return standard_normal_log_prob(q) + beta * log_likelihood_fn(q, datum)
    state = blackjax.mcmc.hmc.HMCState(z, standard_normal_log_prob(z) + beta * ll, -z + beta * ll_grad)
    new, info = kernel(key, state, log_density, eps, inverse_mass, num_leapfrog)
    return new, info.acceptance_rate

  transitions = jax.vmap(transition, in_axes=(0, 0, 0, 0, 0, 0, None))
  estimating = (jnp.arange(chains) < num_chains)                       # [C']

  def body(carry, xs):
    z, ll, ll_grad, log_w, log_eps, acc_sum = carry
    beta_prev, beta, key = xs
    log_w = log_w + (beta - beta_prev) * ll                            # [N]
    eps = jnp.repeat(jnp.exp(log_eps), chains)                         # [N]
    new, acc = transitions(jax.random.split(key, n), z, ll, ll_grad, flat_data, eps, beta)
    z = new.position
    # The kernel returns log f_beta and its gradient at the new z; recover log p(y | z) from them
    # (beta > 0), or evaluate it afresh at beta = 0.
    safe = jnp.where(beta > 0, beta, 1.0)
    ll, ll_grad = jax.lax.cond(
        beta > 0,
        lambda: ((new.logdensity - standard_normal_log_prob(z)) / safe, (new.logdensity_grad + z) / safe),
        lambda: ll_and_grad(z, flat_data))
    acc = acc.reshape(batch, chains)
    if adapt_chains > 0:
      pilot = jnp.sum(jnp.where(estimating, 0.0, acc), axis=1) / adapt_chains   # [B]
      log_eps = log_eps + adapt_rate * (pilot - target_accept)
    acc_sum = acc_sum + acc
    return (z, ll, ll_grad, log_w, log_eps, acc_sum), None

  num_steps = betas.shape[0] - 1
  xs = (betas[:-1], betas[1:], jax.random.split(k_run, num_steps))
  init = (z, ll, ll_grad, jnp.zeros((n,), dtype), jnp.full((batch,), math.log(step_size), dtype),
          jnp.zeros((batch, chains), dtype))
  (z, _, _, log_w, log_eps, acc_sum), _ = jax.lax.scan(body, init, xs)
  log_w = log_w.reshape(batch, chains)[:, :num_chains]                 # [B, C]
  acceptance = jnp.mean(acc_sum[:, :num_chains], axis=1) / num_steps
  z = z.reshape(batch, chains, latent_dim)[:, :num_chains]
  return AISResult(log_w, log_mean_exp(log_w, axis=1), acceptance, jnp.exp(log_eps), z)


def forward_ais(log_likelihood_fn: LogLikelihoodFn, data, latent_dim: int, rng, *, num_steps: int,
                delta: float = 4.0, **kwargs) -> AISResult:
  """Forward AIS from the prior over the sigmoid schedule of `num_steps` steps:
  `.log_estimate` [B] is a stochastic lower bound on log p(y) (nats)."""
  return ais(log_likelihood_fn, data, latent_dim, rng, betas=sigmoid_schedule(num_steps, delta), **kwargs)


def reverse_ais(log_likelihood_fn: LogLikelihoodFn, data, latent_dim: int, rng, posterior_z, *,
                num_steps: int, delta: float = 4.0, **kwargs) -> AISResult:
  """Reverse AIS from exact posterior samples posterior_z [B, L], beta from 1 to 0:
  -`.log_estimate` [B] is a stochastic UPPER bound on log p(y) (nats)."""
  return ais(log_likelihood_fn, data, latent_dim, rng, betas=sigmoid_schedule(num_steps, delta)[::-1].copy(),
             init_z=posterior_z, **kwargs)


def gaussian_log_likelihood(mean, y, sigma2):  # [..., D] -> [...]
  """log N(y; mean, sigma2 I) summed over the last axis (nats): the GAN's observation model."""
  d = y.shape[-1]
  return -0.5 * jnp.sum((y - mean) ** 2, axis=-1) / sigma2 - 0.5 * d * jnp.log(2.0 * math.pi * sigma2)
