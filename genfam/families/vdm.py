"""The VDM family: continuous-time variational diffusion (Kingma et al. 2021), trained on its bound.

The bound of `genfam.diffusion.continuous` per example, in bits/dim (nats / (D log 2),
x in K bins on [-1, 1] as DDPM's):
  bpd = prior_bpd (KL of z_1 to N(0, I)) + decoder_bpd (the discretized-Gaussian
        reconstruction -log P(x | z_0), DDPM's L_0 decoder) + diffusion_bpd (the
        continuous-time diffusion loss, 1/2 E_t gamma'(t) ||eps - eps_hat||^2).
Training minimises it directly (one t per example, stratified over the batch).
Evaluation estimates it with diffusion.eval_t stratified t per example: a stochastic,
unbiased estimate of a bound, likelihood kind 'vlb-continuous-<k>t'. Unconditional:
-log p(x), comparable with the other families' unconditional numbers.

Noise schedule gamma(t) (diffusion.schedule):
  'fixed':   gamma(t) = gamma_min + (gamma_max - gamma_min) t.
  'learned': gamma(t) = g_0 + (g_1 - g_0) (f(t) - f(0)) / (f(1) - f(0)), with f a monotone
             network (`MonotoneGamma`: t + a sum of sigmoids with non-negative weights, as
             VDM's) and learned endpoints g_0 < g_1 (init gamma_min, gamma_max). Trained
             by the bound's gradient alone: the endpoints move the prior and reconstruction
             terms; the continuous diffusion loss depends on the shape between them only
             through its variance (VDM also minimises that variance; not done here).

The U-Net (`genfam.nets.unet`, configs/ddpm.py's) is eps_hat(z_t, 1000 t). EMA weights
(TrainState.ema_params) are used for evaluation and sampling; sampling is ancestral
over sample.steps equal steps of t, then the nearest bin of z_0 / alpha_0.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam import optim
from genfam.diffusion import continuous, samplers
from genfam.errors import GenfamError
from genfam.families.diffusion import make_net
from genfam.family import Family
from genfam.likelihood.bits import nats_to_bpd

SCHEDULES = ("fixed", "learned")
TIME_SCALE = 1000.0   # the U-Net's sinusoidal embedding is made for integer steps 0 .. 1000


class MonotoneGamma(nn.Module):
  """gamma(t) increasing in t: [B] float in [0, 1] -> [B].

  f(t) = t + sum_j w2_j sigmoid(w1_j (2 t - 1) + b_j) / width, with w1, w2 >= 0 (abs),
  gamma = g_0 + (g_1 - g_0) (f(t) - f(0)) / (f(1) - f(0)), g_1 = g_0 + exp(log_range).
  Starts as the linear schedule from gamma_min to gamma_max (w2 starts at zero).
  """
  gamma_min: float = -13.3
  gamma_max: float = 5.0
  width: int = 64

  @nn.compact
  def __call__(self, t):
    w1 = jnp.abs(self.param("w1", nn.initializers.normal(1.0), (self.width,)))
    b = self.param("b", nn.initializers.normal(1.0), (self.width,))
    w2 = jnp.abs(self.param("w2", nn.initializers.zeros, (self.width,)))
    g0 = self.param("gamma_0", nn.initializers.constant(self.gamma_min), ())
    log_range = self.param("log_range", nn.initializers.constant(math.log(self.gamma_max - self.gamma_min)), ())

    def f(u):  # [N] -> [N], increasing
      hidden = jax.nn.sigmoid((2.0 * u[:, None] - 1.0) * w1 + b)                # [N, width]
      return u + hidden @ w2 / self.width

    ends = f(jnp.array([0.0, 1.0], t.dtype))
    return g0 + jnp.exp(log_range) * (f(t) - ends[0]) / (ends[1] - ends[0])


def _gamma_fn(schedule: str, d, params):
  """t [B] -> gamma [B] for the config's schedule (params['gamma'] for a learned one)."""
  if schedule == "fixed":
    return continuous.linear_gamma(float(d.gamma_min), float(d.gamma_max))
  module = MonotoneGamma(float(d.gamma_min), float(d.gamma_max), int(d.gamma_width))
  return lambda t: module.apply({"params": params["gamma"]}, t)


def make(config, spec) -> Family:
  """The VDM Family for dataset `spec` (genfam.data.spec.DatasetSpec)."""
  d = config.diffusion
  if config.model.class_conditional:
    raise GenfamError("the vdm family is unconditional; set --config.model.class_conditional=False")
  if d.schedule not in SCHEDULES:
    raise GenfamError(f"unknown diffusion.schedule {d.schedule!r} for vdm; use one of {SCHEDULES}")
  if not d.gamma_min < d.gamma_max:
    raise GenfamError(f"diffusion.gamma_min={d.gamma_min} must be below diffusion.gamma_max={d.gamma_max}")
  if d.eval_t < 1:
    raise GenfamError(f"diffusion.eval_t={d.eval_t}: the bound needs at least one t per example; set it >= 1")
  net = make_net(config.model, spec)
  tx = optim.optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  num_bins, num_dims, shape = spec.num_bins, spec.num_dims, tuple(spec.image_shape)
  learned = d.schedule == "learned"
  eval_t, sample_steps = int(d.eval_t), int(config.sample.steps)

  def eps_fn(params, train=False, rng=None):
    rngs = {"dropout": rng} if train else None
    return lambda z, t: net.apply({"params": params["net"]}, z, TIME_SCALE * t, None, train, rngs=rngs)

  def init(rng, batch):
    if tuple(batch["image"].shape[1:]) != shape:
      raise GenfamError(f"vdm model built for images {shape}, got {tuple(batch['image'].shape[1:])}; "
                        "use the dataset the config names")
    rng_net, rng_gamma = jax.random.split(rng)
    x = jnp.zeros((1,) + shape, jnp.float32)
    params = {"net": jax.jit(lambda r: net.init({"params": r}, x, jnp.zeros((1,), jnp.float32), None, False))(
        rng_net)["params"]}
    if learned:
      module = MonotoneGamma(float(d.gamma_min), float(d.gamma_max), int(d.gamma_width))
      params["gamma"] = module.init(rng_gamma, jnp.zeros((1,), jnp.float32))["params"]
    return optim.scalar_loss_family_state(params, tx, ema_decay)

  def to_bpd(nats):
    return nats_to_bpd(nats, num_dims)

  def loss_fn(params, model_state, batch, rng):
    rng_bound, rng_drop = jax.random.split(rng)
    n = batch["image"].shape[0]
    # one t per example, stratified over the batch: t_b = (u + b / B) mod 1
    times = jnp.mod(jax.random.uniform(jax.random.fold_in(rng_bound, 1)) + jnp.arange(n) / n, 1.0)[None]
    parts = continuous.vlb(eps_fn(params, True, rng_drop), _gamma_fn(d.schedule, d, params), batch["image"],
                           rng_bound, num_bins, times=times)
    bpd = {k: jnp.mean(to_bpd(v)) for k, v in parts.items()}
    loss = bpd["prior"] + bpd["recon"] + bpd["diffusion"]
    ends = _gamma_fn(d.schedule, d, params)(jnp.array([0.0, 1.0]))
    metrics = {"prior_bpd": bpd["prior"], "decoder_bpd": bpd["recon"], "diffusion_bpd": bpd["diffusion"],
               "gamma_0": ends[0], "gamma_1": ends[1]}
    return loss, (metrics, model_state)

  def log_likelihood(params, batch, rng):
    """Estimate of the continuous bound from eval_t t per example:
    {'bpd', 'prior_bpd', 'diffusion_bpd', 'decoder_bpd'}, each [B] bits/dim."""
    parts = continuous.vlb(eps_fn(params), _gamma_fn(d.schedule, d, params), batch["image"], rng, num_bins,
                           num_t=eval_t)
    out = {"prior_bpd": to_bpd(parts["prior"]), "decoder_bpd": to_bpd(parts["recon"]),
           "diffusion_bpd": to_bpd(parts["diffusion"])}
    out["bpd"] = out["prior_bpd"] + out["decoder_bpd"] + out["diffusion_bpd"]
    return out

  def draw(params, rng, num):
    x = continuous.sample(eps_fn(params), _gamma_fn(d.schedule, d, params), rng, (num,) + shape, sample_steps)
    return samplers.to_pixels(x, num_bins)

  draw = jax.jit(draw, static_argnums=2)

  def sample(params, rng, num, condition=None):
    """uint8 [num, H, W, C] in {0 .. K-1}; unconditional (condition is ignored)."""
    return draw(params, rng, int(num))

  return Family(name="vdm", init=init, update=optim.make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=optim.eval_params, log_likelihood=log_likelihood,
                likelihood_kind=f"vlb-continuous-{eval_t}t", sample=sample)
