"""Optimizers, EMA and the update step of a family trained on one scalar loss.

Families read their config at the edge (their `make`) and pass plain values
here. The GAN, which alternates two optimizers, builds its own update from
`make_optimizer` twice; every other family uses `scalar_loss_family_state` and
`make_scalar_loss_update`.
"""
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Train state of a scalar-loss family.

  params:      the trainable parameters.
  opt_state:   optax state.
  ema_params:  exponential moving average of params (None when EMA is off);
               evaluation and sampling use it.
  model_state: non-trainable model state (e.g. batch statistics); {} if none.
  """
  params: Any
  opt_state: Any
  ema_params: Any = None
  model_state: Any = flax.struct.field(default_factory=dict)


def make_optimizer(learning_rate: float, warmup_steps: int = 0, decay_steps: int = 0,
                   clip_norm: float = 0.0, weight_decay: float = 0.0, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam(W) with linear warm-up, optional cosine decay, optional clipping.

  The schedule rises linearly from 0 to `learning_rate` over `warmup_steps`
  (flows diverge without it), then stays constant, or decays with a cosine to
  0 at `decay_steps` when decay_steps > warmup_steps.
  """
  if decay_steps > warmup_steps:
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(warmup_steps, 1), decay_steps)
  elif warmup_steps > 0:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, learning_rate, warmup_steps), optax.constant_schedule(learning_rate)],
        [warmup_steps])
  else:
    schedule = optax.constant_schedule(learning_rate)
  parts = []
  if clip_norm > 0:
    parts.append(optax.clip_by_global_norm(clip_norm))
  parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
  return optax.chain(*parts)


def optimizer_from_config(optim_config) -> optax.GradientTransformation:
  """Builds `make_optimizer` from a config's `optim` section."""
  c = optim_config
  return make_optimizer(c.learning_rate, c.warmup_steps, c.get("decay_steps", 0), c.clip_norm,
                        c.get("weight_decay", 0.0), c.get("b1", 0.9), c.get("b2", 0.999))


def scalar_loss_family_state(params, tx: optax.GradientTransformation, ema_decay: float,
                             model_state=None) -> TrainState:
  """The initial TrainState: optimizer state, EMA copy (if decay > 0)."""
  ema = jax.tree.map(jnp.copy, params) if ema_decay > 0 else None
  return TrainState(params=params, opt_state=tx.init(params), ema_params=ema,
                    model_state={} if model_state is None else model_state)


def ema_update(ema, params, decay):
  """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def ema_decay_at(decay: float, num_updates: jax.Array) -> jax.Array:
  """min(decay, (1 + n) / (10 + n)) after n applied updates: the EMA warms up
  (as TF's ExponentialMovingAverage with num_updates), so a short run's average
  does not keep a decay^n share of the initial weights; from n = 9/(1 - decay) - 1
  on (1800 steps at 0.995) it is the plain `decay`."""
  n = jnp.asarray(num_updates, jnp.float32)
  return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def applied_updates(opt_state) -> jax.Array:
  """How many updates the optimizer has applied (Adam's step count)."""
  counts = optax.tree_utils.tree_get_all_with_path(opt_state, "count")
  if not counts:
    raise ValueError("the optimizer state has no step count; use make_optimizer's Adam chain")
  return counts[0][1]


LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[dict, Any]]]


def make_scalar_loss_update(loss_fn: LossFn, tx: optax.GradientTransformation, ema_decay: float):
  """Builds `update(state, batch, rng) -> (state, metrics)` from a scalar loss.

  loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))
  Metrics gain 'loss' and 'grad_norm' (global L2 norm before clipping). The
  loop, not this function, guards against non-finite steps.
  """

  def update(state: TrainState, batch, rng):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = ema_update(ema, params, ema_decay_at(ema_decay, applied_updates(state.opt_state)))
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return TrainState(params=params, opt_state=opt_state, ema_params=ema,
                      model_state=model_state), metrics

  return update


def eval_params(state: TrainState):
  """EMA parameters when kept, else the raw parameters."""
  return state.params if state.ema_params is None else state.ema_params
