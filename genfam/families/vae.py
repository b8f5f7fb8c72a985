"""The VAE family: a convolutional VAE with a discrete pixel decoder.

Model. Prior p(z) = N(0, I) over z in R^L (or, class-conditional, a learned
N(mu_y, diag sigma_y^2) per label y); posterior q(z|x) = N(mu(x), diag
sigma(x)^2); decoder p(x|z) a discretized logistic (mixture) or discretized
Gaussian over the K bins of each stored pixel, pixels independent given z
(`genfam.nets.vae_nets`). All log-densities are natural logs; every reported
number goes through `genfam.likelihood.bits.nats_to_bpd` with D = H * W * C as stored.

Bounds on log p(x) of the discrete data x in {0..K-1}^D (nats, per example):

  ELBO   = E_q[log p(x|z)] - KL(q(z|x) || p(z))
           reported as bpd = recon_bpd + kl_bpd, with the reconstruction term a
           one-sample estimate and the KL in closed form (likelihood kind 'elbo');
  IWAE-k = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],  z_i ~ q(z|x) i.i.d.
           (Burda et al. 2016): IWAE-1 = ELBO in expectation, non-decreasing in
           k, -> log p(x) as k -> inf. Computed over chunks of samples with a
           running logsumexp, so memory is one chunk's (kind 'iwae-<k>').

With config.model.class_conditional the prior, encoder and decoder see the label y
and both bounds are bounds on log p(x|y), not comparable with unconditional
numbers.

The bound estimators below are plain functions of the sampled log p(x|z),
log q(z|x), log p(z), so they apply to any model (tests check them on a
linear-Gaussian model whose log p(x) is known).

Training minimises -ELBO in bits/dim, optionally with a KL weight warmed up
linearly over `kl_warmup_steps` updates and free bits (per latent dimension,
on the batch-averaged KL; Kingma et al. 2016). The update count lives in
`TrainState.model_state['step']` because `update` is given no step.
"""
import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from genfam.errors import GenfamError
from genfam.family import Family
from genfam.likelihood.bits import nats_to_bpd
from genfam.likelihood.discretized import bin_centres
from genfam.nets.vae_nets import VAE, PixelDecoder, pixel_decoder
from genfam.optim import (eval_params, make_scalar_loss_update, optimizer_from_config,
                          scalar_loss_family_state)

_LOG_2PI = math.log(2.0 * math.pi)

# ----------------------------------------------------------------------------
# Gaussian algebra and bound estimators: plain functions of arrays.
# ----------------------------------------------------------------------------


def diag_gaussian_log_prob(z, mean, log_scale):  # [..., L] (broadcast) -> [...]
  """log N(z; mean, diag exp(log_scale)^2), summed over the last axis (nats)."""
  u = (z - mean) * jnp.exp(-log_scale)
  return jnp.sum(-0.5 * u * u - log_scale - 0.5 * _LOG_2PI, axis=-1)


def gaussian_kl(mean_q, log_scale_q, mean_p, log_scale_p):  # [..., L] -> [..., L]
  """KL(N(mean_q, s_q^2) || N(mean_p, s_p^2)) per dimension, in nats:
  log(s_p / s_q) + (s_q^2 + (mean_q - mean_p)^2) / (2 s_p^2) - 1/2."""
  var_ratio = jnp.exp(2.0 * (log_scale_q - log_scale_p))
  diff = (mean_q - mean_p) * jnp.exp(-log_scale_p)
  return (log_scale_p - log_scale_q) + 0.5 * (var_ratio + diff * diff) - 0.5


def log_importance_weights(log_px_z, log_qz, log_pz):  # [S, ...] each -> [S, ...]
  """log w = log p(x|z) + log p(z) - log q(z|x) for samples z ~ q."""
  return log_px_z + log_pz - log_qz


def elbo_from_samples(log_px_z, log_qz, log_pz, axis: int = 0):  # [S, ...] -> [...]
  """Monte-Carlo ELBO: the mean over samples (along `axis`) of log w."""
  return jnp.mean(log_importance_weights(log_px_z, log_qz, log_pz), axis=axis)


def iwae_from_samples(log_px_z, log_qz, log_pz, axis: int = 0):  # [S, ...] -> [...]
  """IWAE-S: log (1/S) sum_s w_s over the S samples along `axis`."""
  log_w = log_importance_weights(log_px_z, log_qz, log_pz)
  return jax.nn.logsumexp(log_w, axis=axis) - math.log(log_w.shape[axis])


def chunked_log_mean_exp(log_weight_fn: Callable[[jax.Array], jax.Array],
                         num_samples: int) -> jax.Array:
  """log (1/S) sum_{s<S} exp(log w_s), drawing the log w chunk by chunk.

  log_weight_fn(i) -> [chunk, ...]: the log weights of chunk i (i a traced
  int32; fold it into the caller's rng); the chunk size is read from its
  output. ceil(S / chunk) chunks are drawn inside `lax.scan` and combined by a
  running logsumexp; rows past S in the last chunk are masked out. Memory is
  one chunk's, whatever S. -> [...]
  """
  out = jax.eval_shape(log_weight_fn, jnp.int32(0))                 # [chunk, ...]
  chunk = out.shape[0]
  num_chunks = -(-num_samples // chunk)

  def body(acc, i):
    log_w = log_weight_fn(i)                                        # [chunk, ...]
    index = i * chunk + jnp.arange(chunk)
    valid = (index < num_samples).reshape((chunk,) + (1,) * (log_w.ndim - 1))
    log_w = jnp.where(valid, log_w, -jnp.inf)
    return jnp.logaddexp(acc, jax.nn.logsumexp(log_w, axis=0)), None

  init = jnp.full(out.shape[1:], -jnp.inf, out.dtype)
  total, _ = jax.lax.scan(body, init, jnp.arange(num_chunks, dtype=jnp.int32))
  return total - math.log(num_samples)


def active_units(posterior_mean, threshold: float = 0.01):  # [B, L] -> int32 []
  """Burda et al. (2016): unit u is active if Cov_x(E_q[z_u|x]) > threshold.
  Here the covariance is taken over the examples of one batch (the whole test
  set in the paper), so the count is a noisy estimate on small batches."""
  return jnp.sum(jnp.var(posterior_mean, axis=0) > threshold).astype(jnp.int32)


# ----------------------------------------------------------------------------
# The model, read from the config at the edge.
# ----------------------------------------------------------------------------


def build(config, spec) -> tuple[VAE, PixelDecoder]:
  """The Flax model and pixel decoder described by `config.model` for `spec`."""
  m = config.model
  if len(m.widths) != len(m.blocks) or not m.widths:
    raise GenfamError(f"config.model.widths {tuple(m.widths)} and config.model.blocks "
                      f"{tuple(m.blocks)} must be non-empty and of equal length (one per level)")
  num_classes = 0
  if m.class_conditional:
    if spec.num_classes == 0:
      raise GenfamError(f"config.model.class_conditional=True but dataset {spec.name!r} has no classes; "
                        "set --config.model.class_conditional=False")
    num_classes = spec.num_classes
  pixels = pixel_decoder(m, spec.num_bins)
  model = VAE(tuple(spec.image_shape), m.latent_dim, tuple(m.widths), tuple(m.blocks),
              pixels.params_per_pixel, num_classes, m.norm, m.get("dtype", "float32"))
  return model, pixels


def _inputs(batch, num_bins: int, conditional: bool):
  """uint8 [B, H, W, C] -> (int32 pixels, bin centres in [-1, 1], labels or None)."""
  x = batch["image"].astype(jnp.int32)                               # [B, H, W, C]
  label = None
  if conditional:
    if "label" not in batch:
      raise GenfamError("config.model.class_conditional=True but batches carry no 'label'; "
                        "set --config.model.class_conditional=False")
    label = batch["label"].astype(jnp.int32)                         # [B]
  return x, bin_centres(x, num_bins), label


def _elbo_parts(model, pixels, params, batch, rng):
  """One-sample ELBO parts per example, in nats: -log p(x|z) [B], KL per dim [B, L], mu [B, L]."""
  x, xc, label = _inputs(batch, pixels.num_bins, model.num_classes > 0)
  mean, log_scale = model.apply({"params": params}, xc, label, method=VAE.encode)
  z = mean + jnp.exp(log_scale) * jax.random.normal(rng, mean.shape, mean.dtype)   # [B, L]
  out = model.apply({"params": params}, z, label, method=VAE.decode)            # [B, H, W, C, P]
  recon = -pixels.log_prob(x, out)                                               # [B]
  prior_mean, prior_log_scale = model.apply({"params": params}, label, x.shape[0],
                                            method=VAE.prior)
  kl = gaussian_kl(mean, log_scale, prior_mean, prior_log_scale)                 # [B, L]
  return recon, kl, mean


def log_likelihood_fn(model, pixels, num_dims: int):
  """-ELBO per example in bits/dim, with its parts: {'bpd', 'recon_bpd', 'kl_bpd'} each [B]."""

  def log_likelihood(params, batch, rng):
    recon, kl, _ = _elbo_parts(model, pixels, params, batch, rng)
    recon_bpd = nats_to_bpd(recon, num_dims)
    kl_bpd = nats_to_bpd(jnp.sum(kl, axis=-1), num_dims)
    return {"bpd": recon_bpd + kl_bpd, "recon_bpd": recon_bpd, "kl_bpd": kl_bpd}

  return log_likelihood


def iwae_fn(model, pixels, num_dims: int, num_samples: int, chunk_size: int):
  """IWAE-k per example in bits/dim, -IWAE_k / (D log 2): {'bpd': [B]}.

  The encoder runs once; the decoder runs on chunk_size x B latents at a time
  (memory ~ chunk_size x batch decoder passes), ceil(k / chunk_size) times.
  """

  def iwae(params, batch, rng):
    x, xc, label = _inputs(batch, pixels.num_bins, model.num_classes > 0)
    b = x.shape[0]
    variables = {"params": params}
    mean, log_scale = model.apply(variables, xc, label, method=VAE.encode)      # [B, L]
    prior_mean, prior_log_scale = model.apply(variables, label, b, method=VAE.prior)
    chunk = max(1, min(chunk_size, num_samples))
    chunk_label = None if label is None else jnp.repeat(label, chunk)           # [B * chunk]

    def log_weights(i):  # -> [chunk, B]
      # Samples laid out [B, chunk, ...] so the batch axis stays leading (and sharded).
      eps = jax.random.normal(jax.random.fold_in(rng, i), (b, chunk) + mean.shape[1:], mean.dtype)
      z = mean[:, None] + jnp.exp(log_scale)[:, None] * eps                      # [B, chunk, L]
      out = model.apply(variables, z.reshape(b * chunk, -1), chunk_label, method=VAE.decode)
      out = out.reshape((b, chunk) + out.shape[1:])                              # [B, chunk, H, W, C, P]
      log_w = log_importance_weights(
          pixels.log_prob(x[:, None], out),                                      # [B, chunk]
          diag_gaussian_log_prob(z, mean[:, None], log_scale[:, None]),
          diag_gaussian_log_prob(z, prior_mean[:, None], prior_log_scale[:, None]))
      return log_w.T

    bound = chunked_log_mean_exp(log_weights, num_samples)              # [B] nats
    return {"bpd": nats_to_bpd(-bound, num_dims)}

  return iwae


def loss_fn_for(model, pixels, num_dims: int, kl_warmup_steps: int, free_bits: float,
                active_threshold: float):
  """loss_fn(params, model_state, batch, rng) -> (loss, (metrics, model_state)).

  loss = [mean_B recon + beta_t * sum_l max(mean_B KL_l, free_bits)] / (D log 2)
  with beta_t = min(1, (t + 1) / kl_warmup_steps) at update t (1 without
  warm-up). With neither option the loss is the batch's -ELBO in bits/dim.

  Metrics: 'elbo_bpd' = 'recon_bpd' + 'kl_bpd' (the batch's unweighted -ELBO);
  'kl_per_dim' [L]: mean_B KL(q(z_l|x) || p(z_l)) of each latent dimension l
  (nats), with its mean/min/max as scalars; 'active_units' (Burda et al.);
  'alert_posterior_collapse' = 1.0 when no unit is active (posterior collapse),
  else 0.0 (the loop reports 'alert_<name>' metrics as warnings).
  """

  def loss_fn(params, model_state, batch, rng):
    step = model_state["step"]
    recon, kl, mean = _elbo_parts(model, pixels, params, batch, rng)
    kl_per_dim = jnp.mean(kl, axis=0)                                          # [L] nats
    if kl_warmup_steps > 0:
      beta = jnp.minimum(1.0, (step + 1).astype(jnp.float32) / kl_warmup_steps)
    else:
      beta = jnp.float32(1.0)
    kl_term = jnp.sum(jnp.maximum(kl_per_dim, free_bits)) if free_bits > 0 else jnp.sum(kl_per_dim)
    loss = nats_to_bpd(jnp.mean(recon) + beta * kl_term, num_dims)
    active = active_units(mean, active_threshold)
    metrics = {
        "elbo_bpd": nats_to_bpd(jnp.mean(recon + jnp.sum(kl, axis=-1)), num_dims),
        "recon_bpd": nats_to_bpd(jnp.mean(recon), num_dims),
        "kl_bpd": nats_to_bpd(jnp.sum(kl_per_dim), num_dims),
        "kl_weight": beta,
        "kl_per_dim": kl_per_dim,                                              # [L] nats
        "kl_per_latent_mean_nats": jnp.mean(kl_per_dim),
        "kl_per_latent_min_nats": jnp.min(kl_per_dim),
        "kl_per_latent_max_nats": jnp.max(kl_per_dim),
        "active_units": active,
        # 1.0 when no latent carries information; the loop reports alert_* metrics as warnings
        "alert_posterior_collapse": (active == 0).astype(jnp.float32),
    }
    return loss, (metrics, {"step": step + 1})

  return loss_fn


def _sample_labels(num_classes: int, num: int, condition):
  if not num_classes:
    return None
  if condition is None:
    return jnp.arange(num, dtype=jnp.int32) % num_classes                        # balanced
  return jnp.asarray(condition, jnp.int32)


def prior_noise(rng, shape, truncation: float = 0.0, dtype=jnp.float32):  # -> [*shape]
  """The standard normal eps of the prior draw z = mu + T sigma eps: eps_i ~ N(0, 1) i.i.d., or with
  truncation tau > 0, N(0, 1) conditioned on |eps_i| <= tau (the truncation trick: the law of redrawing
  every |eps_i| > tau). tau = 0 (off) is exactly the untruncated draw."""
  if truncation > 0:
    return jax.random.truncated_normal(rng, -truncation, truncation, shape, dtype)
  return jax.random.normal(rng, shape, dtype)


def sample_fn(model, pixels, decode: str, temperature: float, truncation: float = 0.0):
  """sample(params, rng, num, condition=None) -> uint8 [num, H, W, C] in {0..K-1}.

  z = mu + temperature * sigma * eps, (mu, sigma) the prior p(z[|y]) and eps = `prior_noise`
  (truncated at `truncation` if > 0): the quality-diversity knobs sample.temperature and
  sample.truncation (T = 1, tau = 0: the model's own prior). Then each pixel is
  the decoder's mode (decode='mode': the most probable bin, the usual clean
  picture) or a draw from p(x|z) (decode='sample': a true sample of the model,
  noisier). A conditional model takes int32 labels [num] as `condition`
  (default: labels 0, 1, .., C-1, 0, ..); an unconditional one ignores it.
  """
  if decode not in ("mode", "sample"):
    raise GenfamError(f"unknown config.sample.decode {decode!r}; use 'mode' or 'sample'")
  if not temperature >= 0:
    raise GenfamError(f"sample.temperature={temperature} must be >= 0; 1 samples the prior as trained")
  if not truncation >= 0:
    raise GenfamError(f"sample.truncation={truncation} must be >= 0; 0 turns truncation off")

  def sample(params, rng, num: int, condition: Optional[jax.Array] = None):
    label = _sample_labels(model.num_classes, num, condition)
    k_z, k_x = jax.random.split(rng)
    variables = {"params": params}
    prior_mean, prior_log_scale = model.apply(variables, label, num, method=VAE.prior)
    eps = prior_noise(k_z, prior_mean.shape, truncation, prior_mean.dtype)
    z = prior_mean + temperature * jnp.exp(prior_log_scale) * eps              # [num, L]
    out = model.apply(variables, z, label, method=VAE.decode)                   # [num, H, W, C, P]
    x = pixels.mode(out) if decode == "mode" else pixels.sample(k_x, out)
    return x.astype(jnp.uint8)

  return sample


def reconstruct(config, spec, params, image, rng, label=None, posterior: str = "mean",
                decode: str = "mode"):
  """Reconstructions of images: uint8 [B, H, W, C] -> uint8 [B, H, W, C] in {0..K-1}.

  A pure function for notebooks: z is the posterior mean (posterior='mean') or
  a draw from q(z|x) ('sample'); the image is the decoder's mode ('mode') or a
  draw from p(x|z) ('sample'). params: the family's `eval_params(state)`;
  label int32 [B] for a class-conditional model. With the defaults it is
  deterministic: mode(p(x | z = E_q[z|x])).
  """
  if posterior not in ("mean", "sample"):
    raise GenfamError(f"unknown posterior {posterior!r} for reconstruct; use 'mean' or 'sample'")
  if decode not in ("mode", "sample"):
    raise GenfamError(f"unknown decode {decode!r} for reconstruct; use 'mode' or 'sample'")
  model, pixels = build(config, spec)
  batch = {"image": image} if label is None else {"image": image, "label": label}
  _, xc, label = _inputs(batch, pixels.num_bins, model.num_classes > 0)
  k_z, k_x = jax.random.split(rng)
  variables = {"params": params}
  mean, log_scale = model.apply(variables, xc, label, method=VAE.encode)       # [B, L]
  z = mean
  if posterior == "sample":
    z = mean + jnp.exp(log_scale) * jax.random.normal(k_z, mean.shape, mean.dtype)
  out = model.apply(variables, z, label, method=VAE.decode)                     # [B, H, W, C, P]
  x = pixels.mode(out) if decode == "mode" else pixels.sample(k_x, out)
  return x.astype(jnp.uint8)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(model, rng, x, label):
  """model.init under jit (one compile, not one per op). The loop runs every
  family's init with the classic threefry (see genfam.loop.train.Run.init_state)."""
  return model.init(rng, x, label)["params"]


def make(config, spec) -> Family:
  """The VAE family for dataset `spec`, configured by `config` (configs/vae.py)."""
  model, pixels = build(config, spec)
  num_dims = spec.num_dims
  m = config.model
  tx = optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  loss_fn = loss_fn_for(model, pixels, num_dims, m.kl_warmup_steps, m.free_bits,
                        m.active_threshold)

  def init(rng, batch):
    expected = tuple(spec.image_shape)
    if tuple(batch["image"].shape[1:]) != expected:
      raise GenfamError(f"VAE built for images {expected} got {tuple(batch['image'].shape[1:])}; "
                        "the config's data.name and the batches disagree")
    _, xc, label = _inputs(batch, pixels.num_bins, model.num_classes > 0)
    label = None if label is None else label[:1]
    params = _init_params(model, rng, xc[:1], label)
    return scalar_loss_family_state(params, tx, ema_decay, model_state={"step": jnp.int32(0)})

  extra = {}
  if config.eval.iwae_k > 0:
    extra[f"iwae-{config.eval.iwae_k}"] = iwae_fn(model, pixels, num_dims, config.eval.iwae_k,
                                                  config.eval.iwae_chunk)
  return Family(
      name="vae",
      init=init,
      update=make_scalar_loss_update(loss_fn, tx, ema_decay),
      eval_params=eval_params,
      log_likelihood=log_likelihood_fn(model, pixels, num_dims),
      likelihood_kind="elbo",
      sample=sample_fn(model, pixels, config.sample.decode, config.sample.temperature,
                       config.sample.get("truncation", 0.0)),
      extra_likelihoods=extra,
      likelihood_condition="label" if model.num_classes > 0 else "",
  )
