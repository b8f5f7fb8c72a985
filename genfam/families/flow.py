"""The normalizing-flow family: RealNVP and Glow (registry name 'flow').

The model (genfam.families.flow_models) is one bijector f from dequantized
images y = (x + u) / K in [0, 1)^D to eps in R^D, so the likelihood is exact:
  -log p(y) = -log N(eps; 0, I) - log|det df/dy|            (nats)
and, through genfam.likelihood.bits, bpd = (-log p(y) + D log K) / (D log 2).
`log_likelihood` returns that total as 'bpd' with its labelled parts, all
[B] bits/dim, which add up to it:
  prior_bpd           -log N(eps; 0, I) - (learned priors' log-det): -log of
                      the (learned, conditional) Gaussian prior of the latents
  logdet_bpd          -log|det| of the learned layers (couplings, actnorm, 1x1)
  preprocess_bpd      -log|det| of the fixed preprocessing (logit / scaling)
  discretization_bpd  log2(K): the D log K term of the bins (8 for 8-bit data)
Training minimises the batch mean of 'bpd'. Samples are f^-1(eps) with
eps ~ N(0, T^2 I), T = config.sample.temperature (the quality-diversity knob, `base_noise`).

Config (read here, at the edge): config.model.kind ('realnvp' | 'glow'),
num_levels, num_steps, width, num_blocks, norm, couplings, lu, lu_identity_init, scale_fn,
max_log_scale (optional, 1), split_prior, learn_top, class_conditional, logit_alpha, input_scale;
config.optim.* (optimizer and ema_decay); config.sample.temperature.
"""
import functools
import math

import jax
import jax.numpy as jnp

from genfam import optim
from genfam.errors import GenfamError
from genfam.families.flow_models import Glow, MultiScaleFlow, RealNVP
from genfam.family import Family
from genfam.likelihood import bits

KINDS = ("realnvp", "glow")


def build_model(model_config, image_shape, num_classes: int = 0) -> MultiScaleFlow:
  """The flow bijector for images of `image_shape` from a config's `model` section."""
  m = model_config
  kind = m.get("kind", "glow")
  common = dict(image_shape=tuple(image_shape), num_levels=m.num_levels, num_classes=num_classes,
                dtype=m.get("dtype", "float32"))
  for key in ("split_prior", "learn_top"):
    if key in m:
      common[key] = m[key]
  if kind == "glow":
    return Glow(**common, num_steps=m.num_steps, width=m.width, lu=m.get("lu", True),
                lu_identity_init=m.get("lu_identity_init", False), scale_fn=m.get("scale_fn", "sigmoid"),
                max_log_scale=m.get("max_log_scale", 1.0), input_scale=m.get("input_scale", 1.0))
  if kind == "realnvp":
    return RealNVP(**common, couplings=tuple(m.get("couplings", (3, 3, 4))), width=m.width,
                   num_blocks=m.get("num_blocks", 1), norm=m.get("norm", "layer"),
                   scale_fn=m.get("scale_fn", "tanh"), max_log_scale=m.get("max_log_scale", 1.0),
                   logit_alpha=m.get("logit_alpha", 0.05))
  raise GenfamError(f"unknown flow kind config.model.kind={kind!r}; use one of {KINDS}")


def base_noise(rng, num: int, num_dims: int, temperature) -> jax.Array:  # -> [num, D]
  """eps ~ N(0, T^2 I_D), the base draw a sample inverts: T = 1 samples the model as trained;
  T < 1 (a colder draw, Kingma & Dhariwal 2018) trades diversity for smoother samples. ||eps|| is
  T times the T = 1 draw's from the same rng."""
  return temperature * jax.random.normal(rng, (num, num_dims))


def check_temperature(temperature: float) -> float:
  """sample.temperature if it is >= 0 (0 inverts the mode eps = 0), else a one-line GenfamError."""
  if not temperature >= 0:
    raise GenfamError(f"sample.temperature={temperature} must be >= 0; 1 samples the model as trained")
  return temperature


def quantize(y: jax.Array, num_bins: int) -> jax.Array:
  """[0, 1) floats -> uint8 bins floor(y K), clipped to {0 .. K-1} (NaN -> 0)."""
  y = jnp.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0)
  return jnp.clip(jnp.floor(y * num_bins), 0, num_bins - 1).astype(jnp.uint8)


# The flows' number (docs/DESIGN.md, "Likelihood conventions"): E_u[-log p(y)] over uniform noise is
# -log of the discrete probability of x only up to Jensen's gap, so it bounds the discrete NLL from above.
DEQUANTIZED_NOTE = "exact for the dequantized density; an upper bound on the discrete negative log-likelihood"


def make(config, spec) -> Family:
  """The flow Family for dataset `spec` (a genfam.data.spec.DatasetSpec)."""
  num_classes = spec.num_classes if config.model.get("class_conditional", False) else 0
  model = build_model(config.model, spec.image_shape, num_classes)
  try:
    model.shapes()
  except ValueError as e:
    raise GenfamError(f"{e}: config.model.num_levels={config.model.num_levels} does not fit "
                      f"{spec.name} images {tuple(spec.image_shape)}") from None
  num_bins, num_dims = spec.num_bins, spec.num_dims
  tx = optim.optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  default_temperature = check_temperature(config.sample.get("temperature", 1.0))

  def labels(batch):
    return jnp.asarray(batch["label"]) if num_classes else None

  def check_shape(image):
    if tuple(image.shape[1:]) != tuple(spec.image_shape):
      raise GenfamError(f"flow built for {spec.name} images {tuple(spec.image_shape)} got a batch of "
                        f"{tuple(image.shape[1:])}; check config.data.name")

  def bpd_parts(variables, batch, rng):  # -> {name: [B] bits/dim}
    check_shape(batch["image"])
    y = bits.dequantize(rng, batch["image"], num_bins)
    lp = model.apply(variables, y, labels(batch), method=model.log_prob_parts)
    nll = -(lp["gaussian"] + lp["prior"] + lp["flow"] + lp["preprocess"])
    return {
        "bpd": bits.continuous_nll_to_bpd(nll, num_dims, num_bins),
        "prior_bpd": bits.nats_to_bpd(-(lp["gaussian"] + lp["prior"]), num_dims),
        "logdet_bpd": bits.nats_to_bpd(-lp["flow"], num_dims),
        "preprocess_bpd": bits.nats_to_bpd(-lp["preprocess"], num_dims),
        "discretization_bpd": bits.nats_to_bpd(jnp.full_like(nll, num_dims * math.log(num_bins)), num_dims),
    }

  def init(rng, batch):
    """Train state; actnorm layers are initialised on this (dequantized) batch."""
    check_shape(batch["image"])
    deq_rng, init_rng = jax.random.split(rng)
    y = bits.dequantize(deq_rng, batch["image"], num_bins)
    init_fn = jax.jit(functools.partial(model.init, method=model.forward_and_log_det))
    variables = dict(init_fn(init_rng, y, labels(batch)))
    params = variables.pop("params")
    return optim.scalar_loss_family_state(params, tx, ema_decay, model_state=variables)

  def loss_fn(params, model_state, batch, rng):
    parts = bpd_parts({"params": params, **model_state}, batch, rng)
    loss = jnp.mean(parts["bpd"])
    return loss, ({k: jnp.mean(v) for k, v in parts.items()}, model_state)

  def eval_params(state):
    """All the model's variables: (EMA) params plus the fixed constants (LU permutations)."""
    return {"params": optim.eval_params(state), **state.model_state}

  def log_likelihood(variables, batch, rng):  # batch['image'] uint8 [B, H, W, C] -> {name: [B]}
    return bpd_parts(variables, batch, rng)

  @functools.partial(jax.jit, static_argnums=2)
  def sample_jit(variables, rng, num, condition, temperature):
    eps_rng, label_rng = jax.random.split(rng)
    eps = base_noise(eps_rng, num, num_dims, temperature)
    label = None
    if num_classes:
      label = (jnp.asarray(condition, jnp.int32) if condition is not None
               else jax.random.randint(label_rng, (num,), 0, num_classes))
    y, _ = model.apply(variables, eps, label, method=model.inverse_and_log_det)
    return quantize(y, num_bins)

  def sample(variables, rng, num: int, condition=None, temperature=None):  # -> uint8 [num, H, W, C]
    """x = f^-1(eps), eps ~ N(0, T^2 I), T = temperature or config.sample.temperature.

    A class-conditional model uses `condition` (int labels [num]) or, without
    it, uniformly drawn labels; an unconditional one ignores `condition`.
    """
    t = default_temperature if temperature is None else check_temperature(temperature)
    return sample_jit(variables, rng, num, condition if num_classes else None, jnp.asarray(t, jnp.float32))

  return Family(name="flow", init=init,
                update=optim.make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=eval_params, log_likelihood=log_likelihood, likelihood_kind="exact",
                likelihood_condition="label" if num_classes else "",
                likelihood_note=DEQUANTIZED_NOTE,
                sample=sample)
