"""The latent diffusion family: stage 2 of Stable Diffusion's recipe, a VDM prior on frozen stage-1 latents.

Model. The stage-1 run (configs/latent_autoencoder.py, model.autoencoder_workdir) is FROZEN: the loop
restores it (`genfam.loop.frozen.family_inputs` hands `autoencoder`, a `Frozen`) and this family only
calls its exports: the encoder q(z|x) = N(mean(x), diag s(x)^2) on a latent grid z [h, w, c], the
pixel decoder p(x|z) over the K bins. The prior p(z [| caption]) is a continuous-time variational
diffusion model (Kingma et al. 2021; `genfam.diffusion.continuous`) on z, with VDM's schedule gamma(t)
(fixed linear, or learned: `genfam.families.vdm.MonotoneGamma`) and configs/ddpm.py's U-Net
eps_hat(z_t, 1000 t[, c]) on the latent grid. Caption condition (model.condition='caption'): c is
the frozen CLIP text embedding of the caption, exactly as the caption DDPM takes it
(`genfam.families.diffusion.make_conditioning`, model.text_encoder_workdir), replaced by the learned
null embedding with probability model.p_uncond in training (classifier-free guidance).

The bound (LSGM, Vahdat et al. 2021), per example, in nats; bits/dim = nats / (D log 2), D the
image's stored pixels (784), so the numbers are comparable with every other family's:
  -log p(x) <= E_q(z|x)[-log p(x|z)] - H[q(z|x)] + E_q(z|x)[-log p(z)]
            <= decoder + entropy + prior,
  decoder = -log p(x|z) at one z ~ q(z|x)                     (discrete: -log of a probability)
  entropy = -H[q(z|x)] = -sum_i (log s_i + 1/2 log(2 pi e))   (closed form; negative entropy)
  prior   = the diffusion prior's continuous-time bound on the DENSITY -log p(z) at the same z
            (`continuous.continuous_vlb`): prior_kl KL(q(z_1|z) || N(0, I)) + prior_recon
            E -log N(z; z_0 / alpha_0, exp(gamma_0) I) (= D_z/2 (1 + log 2 pi + gamma_0), exact)
            + prior_diffusion 1/2 E_t gamma'(t) ||eps - eps_hat(z_t, t)||^2 (eval_t stratified t).
The first inequality is the ELBO with p(z) as prior (its KL split into entropy and cross-entropy);
the second holds for every z. Every draw (z, t, eps) is one per example and term, so the mean is an
unbiased estimate of an upper bound on -log2 p(x) / D: likelihood kind 'lsgm-<k>t' (k = eval_t),
with parts decoder_bpd + entropy_bpd + prior_bpd = bpd and the prior's split bpd_prior_kl,
bpd_prior_recon, bpd_prior_diffusion. A caption model is bounded with each test image's own caption
(diffusion.bound_condition='caption'): -log p(x | caption), labelled so; 'null' bounds the
unconditional prior under the null embedding. Training minimises the prior term alone (the stage-1
terms do not depend on this family's parameters), with z ~ q(z|x) drawn afresh each step and one
stratified t per example: the bound's own gradient, as VDM trains.

Sampling: DDIM (`genfam.diffusion.samplers.ddim_sample`, eta = sample.eta) over sample.ddim_steps
equally spaced t on the continuous process (`continuous.ddim_schedule`), with classifier-free
guidance weight w = sample.guidance, eps = eps(z, t, null) + w (eps(z, t, c) - eps(z, t, null))
(w = 1: the conditional model, w = 0: the unconditional one), then the stage-1 decoder
(sample.decode: each pixel's most probable bin, or a draw from p(x|z)).
"""
import dataclasses
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from genfam import optim
from genfam.diffusion import continuous, samplers
from genfam.errors import GenfamError
from genfam.families.diffusion import make_conditioning, make_net
from genfam.families.two_stage.latent_autoencoder import gaussian_entropy
from genfam.families.vdm import TIME_SCALE, MonotoneGamma
from genfam.family import Family
from genfam.likelihood.bits import nats_to_bpd

SCHEDULES = ("fixed", "learned")
BOUND_CONDITIONS = ("caption", "null")
DECODES = ("mode", "sample")
EXPORTS = ("encode", "decoder_nll_bits", "decode")


def lsgm_bound(decoder_nll: Callable, mean, log_scale, prior_bound: Callable, rng) -> dict:
  """LSGM's bound on -log p(x) from one z ~ q(z|x) = N(mean, diag exp(log_scale)^2), nats per example.

  decoder_nll(z [B, ...]) -> -log p(x|z) [B]; prior_bound(z, rng) -> {'prior', 'recon', 'diffusion'}
  [B] each (a bound on -log p(z): `continuous.continuous_vlb`). mean, log_scale [B, ...].
  -> {'decoder', 'entropy' (= -H[q], closed form), 'prior_kl', 'prior_recon', 'prior_diffusion'}, each [B];
  their sum is an unbiased one-draw estimate of the bound."""
  rng_z, rng_prior = jax.random.split(rng)
  z = mean + jnp.exp(log_scale) * jax.random.normal(rng_z, mean.shape, mean.dtype)
  prior = prior_bound(z, rng_prior)
  return {"decoder": decoder_nll(z), "entropy": -gaussian_entropy(log_scale), "prior_kl": prior["prior"],
          "prior_recon": prior["recon"], "prior_diffusion": prior["diffusion"]}


def _check(config, autoencoder):
  d, m = config.diffusion, config.model
  if autoencoder is None:
    raise GenfamError("latent_diffusion needs its frozen stage 1: train configs/latent_autoencoder.py, pass its "
                      "workdir as --config.model.autoencoder_workdir=DIR, and build the family as the loop does "
                      "(genfam.loop.frozen.make_family)")
  missing = [name for name in EXPORTS if name not in autoencoder.functions]
  if missing:
    raise GenfamError(f"model.autoencoder_workdir holds a {autoencoder.config.get('family')!r} model without "
                      f"{missing}: name a configs/latent_autoencoder.py workdir")
  if m.get("class_conditional", False):
    raise GenfamError("latent_diffusion conditions on captions or nothing; set --config.model.class_conditional=False")
  if d.schedule not in SCHEDULES:
    raise GenfamError(f"unknown diffusion.schedule {d.schedule!r}; use one of {SCHEDULES}")
  if not d.gamma_min < d.gamma_max:
    raise GenfamError(f"diffusion.gamma_min={d.gamma_min} must be below diffusion.gamma_max={d.gamma_max}")
  if d.eval_t < 1:
    raise GenfamError(f"diffusion.eval_t={d.eval_t}: the bound needs at least one t per example; set it >= 1")
  if d.bound_condition not in BOUND_CONDITIONS:
    raise GenfamError(f"unknown diffusion.bound_condition {d.bound_condition!r}; use one of {BOUND_CONDITIONS}")
  if d.bound_condition == "caption" and m.get("condition", "") != "caption":
    raise GenfamError("diffusion.bound_condition='caption' needs a caption model; set --config.model.condition="
                      "caption, or --config.diffusion.bound_condition=null")
  if config.sample.decode not in DECODES:
    raise GenfamError(f"unknown sample.decode {config.sample.decode!r}; use one of {DECODES}")
  if not 0.0 <= float(config.sample.eta) <= 1.0:
    raise GenfamError(f"sample.eta={config.sample.eta} is outside [0, 1]; set --config.sample.eta between 0 "
                      "(deterministic DDIM) and 1")
  if config.sample.ddim_steps < 1:
    raise GenfamError(f"sample.ddim_steps={config.sample.ddim_steps}: set it >= 1")


def make(config, spec, autoencoder=None, encode_text: Optional[Callable] = None) -> Family:
  """The latent diffusion Family for dataset `spec`: `autoencoder` the frozen stage 1 (a
  `genfam.loop.frozen.Frozen`: .params and .functions, its exports), `encode_text` the frozen CLIP
  text encoder of a caption model (tokens [B, L] -> [B, E]), both restored by the loop."""
  _check(config, autoencoder)
  d = config.diffusion
  ae, ae_params = autoencoder.functions, autoencoder.params
  shape, num_dims = tuple(spec.image_shape), spec.num_dims
  mean_shape = jax.eval_shape(lambda p, x: ae["encode"](p, x)[0], ae_params,
                              jax.ShapeDtypeStruct((1,) + shape, jnp.uint8))
  z_shape = tuple(mean_shape.shape[1:])                              # (h, w, c)
  conditioning = make_conditioning(config.model, spec, encode_text)
  net = make_net(config.model, dataclasses.replace(spec, image_shape=z_shape), False, conditioning.dim)
  own_caption = conditioning.kind == "caption" and d.bound_condition == "caption"
  tx = optim.optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  eval_t = int(d.eval_t)
  nats_per_bpd = num_dims * math.log(2.0)
  gamma_module = MonotoneGamma(float(d.gamma_min), float(d.gamma_max), int(d.gamma_width))

  def gamma_fn(params):  # -> t [N] -> gamma [N]
    if d.schedule == "fixed":
      return continuous.linear_gamma(float(d.gamma_min), float(d.gamma_max))
    return lambda t: gamma_module.apply({"params": params["gamma"]}, t)

  def eps_fn(params, condition, train=False, rng=None):  # -> (z_t [B, h, w, c], t [B] in [0, 1]) -> eps_hat
    rngs = {"dropout": rng} if train else None
    return lambda z, t: net.apply({"params": params["net"]}, z, TIME_SCALE * t, condition, train, rngs=rngs)

  def posterior(image):  # uint8 [B, H, W, C] -> mean, log_scale [B, h, w, c] of the frozen q(z|x)
    mean, log_scale = ae["encode"](ae_params, image)
    return jax.lax.stop_gradient(mean), jax.lax.stop_gradient(log_scale)

  def init(rng, batch):
    if tuple(batch["image"].shape[1:]) != shape:
      raise GenfamError(f"latent diffusion built for images {shape}, got {tuple(batch['image'].shape[1:])}; "
                        "use the dataset the config names")
    rng_net, rng_gamma = jax.random.split(rng)
    condition = jnp.zeros((1, conditioning.dim), jnp.float32) if conditioning.kind == "caption" else None
    params = {"net": jax.jit(lambda r: net.init({"params": r}, jnp.zeros((1,) + z_shape, jnp.float32),
                                                jnp.zeros((1,), jnp.float32), condition, False))(rng_net)["params"]}
    if d.schedule == "learned":
      params["gamma"] = gamma_module.init(rng_gamma, jnp.zeros((1,), jnp.float32))["params"]
    return optim.scalar_loss_family_state(params, tx, ema_decay)

  def to_bpd(nats):
    return nats_to_bpd(nats, num_dims)

  def loss_fn(params, model_state, batch, rng):
    """The prior term of the bound at z ~ q(z|x), bits/dim (one stratified t per example)."""
    rng_z, rng_bound, rng_drop, rng_t = jax.random.split(rng, 4)
    mean, log_scale = posterior(batch["image"])
    z = mean + jnp.exp(log_scale) * jax.random.normal(rng_z, mean.shape, mean.dtype)
    n = z.shape[0]
    times = jnp.mod(jax.random.uniform(rng_t) + jnp.arange(n) / n, 1.0)[None]         # [1, B]
    parts = continuous.continuous_vlb(eps_fn(params, conditioning.of_batch(batch), True, rng_drop),
                                      gamma_fn(params), z, rng_bound, times=times)
    bpd = {k: jnp.mean(to_bpd(v)) for k, v in parts.items()}
    loss = bpd["prior"] + bpd["recon"] + bpd["diffusion"]
    ends = gamma_fn(params)(jnp.array([0.0, 1.0]))
    metrics = {"prior_bpd": loss, "bpd_prior_kl": bpd["prior"], "bpd_prior_recon": bpd["recon"],
               "bpd_prior_diffusion": bpd["diffusion"], "gamma_0": ends[0], "gamma_1": ends[1],
               "latent_rms": jnp.sqrt(jnp.mean(z ** 2))}
    return loss, (metrics, model_state)

  def log_likelihood(params, batch, rng):
    """LSGM's bound, eval_t stratified t: {'bpd', 'decoder_bpd', 'entropy_bpd', 'prior_bpd', 'bpd_prior_kl',
    'bpd_prior_recon', 'bpd_prior_diffusion'}, each [B] bits/dim."""
    condition = conditioning.of_batch(batch) if own_caption else None
    mean, log_scale = posterior(batch["image"])
    prior_bound = lambda z, r: continuous.continuous_vlb(eps_fn(params, condition), gamma_fn(params), z, r,
                                                         num_t=eval_t)
    decoder = lambda z: ae["decoder_nll_bits"](ae_params, batch["image"], z) * nats_per_bpd   # -> nats
    parts = {k: to_bpd(v) for k, v in lsgm_bound(decoder, mean, log_scale, prior_bound, rng).items()}
    out = {"decoder_bpd": parts.pop("decoder"), "entropy_bpd": parts.pop("entropy")}
    out.update({f"bpd_{k}": v for k, v in parts.items()})
    out["prior_bpd"] = out["bpd_prior_kl"] + out["bpd_prior_recon"] + out["bpd_prior_diffusion"]
    out["bpd"] = out["decoder_bpd"] + out["entropy_bpd"] + out["prior_bpd"]
    return out

  draw = make_sampler(config, z_shape, net, conditioning, gamma_fn, ae["decode"])

  def sample(params, rng, num, condition=None):
    """uint8 [num, H, W, C]; condition: caption tokens [num, L] (or labels, as class prompts) or None."""
    return draw(params, ae_params, rng, int(num), condition)

  kind = f"lsgm-{eval_t}t"
  return Family(name="latent_diffusion", init=init, update=optim.make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=optim.eval_params, log_likelihood=log_likelihood, likelihood_kind=kind, sample=sample,
                likelihood_condition="caption" if own_caption else "", sample_condition=conditioning.kind,
                likelihood_note=f"LSGM bound: stage-1 decoder + negative encoder entropy + the diffusion prior's "
                                f"continuous-time bound on the latent density ({eval_t} t); one z per image")


def make_sampler(config, z_shape, net, conditioning, gamma_fn, decode, *,
                 steps: Optional[int] = None, guidance: Optional[float] = None):
  """A jitted `draw(params, ae_params, rng, num, condition=None) -> uint8 [num, H, W, C]` (ae_params:
  the frozen stage 1's, an argument so the program does not hold them as constants): DDIM over `steps`
  (default sample.ddim_steps) equally spaced t of the continuous process with guidance weight w
  (default sample.guidance) on `condition` (caption tokens [num, L] or labels [num]; None: the null
  condition), then the frozen decoder's mode or a draw (sample.decode)."""
  c = config.sample
  steps = int(c.ddim_steps if steps is None else steps)
  weight, eta, how = float(c.guidance if guidance is None else guidance), float(c.eta), c.decode
  timesteps = np.arange(steps - 1, -1, -1, dtype=np.int32)            # schedule indices S-1 .. 0

  def draw(params, ae_params, rng, num: int, condition=None):
    rng_z, rng_x = jax.random.split(rng)
    eps_c = lambda z, i, cond: net.apply({"params": params["net"]}, z, TIME_SCALE * (i + 1.0) / steps, cond, False)
    null = conditioning.null(num)
    if condition is None or not conditioning.kind:
      eps_fn = lambda z, i: eps_c(z, i, null)
    else:
      eps_fn = samplers.guided_eps_fn(eps_c, conditioning.for_sampling(condition), null, weight)
    schedule = continuous.ddim_schedule(gamma_fn(params), steps)
    z = samplers.ddim_sample(eps_fn, schedule, timesteps, rng_z, (num,) + z_shape, eta=eta)
    return decode(ae_params, z, rng_x, how)

  return jax.jit(draw, static_argnums=3)
