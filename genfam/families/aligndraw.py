"""The AlignDRAW family: DRAW's recurrent VAE with attention, conditioned on the caption's words.

Model (Mansimov et al. 2016, on DRAW, Gregor et al. 2015; the networks and the step equations
are `genfam.nets.draw`). T steps, a latent z_t in R^Z per step; y the caption tokens:
    p(x, z_1:T | y) = p(x | c_T) prod_t p(z_t | h^gen_{t-1})
    q(z_1:T | x, y) = prod_t q(z_t | h^enc_t)
with h^gen_{t-1} a function of z_<t and y (the alignment over y's words), h^enc_t of x, z_<t
and y, both priors and posteriors diagonal Gaussians. p(x | c_T) is the VAE family's pixel
decoder (`genfam.nets.vae_nets.PixelDecoder`): a discretized logistic (mixture) or Gaussian over
the K bins of each stored pixel, pixels independent given the final canvas c_T. Natural logs;
every reported number goes through `genfam.likelihood.bits.nats_to_bpd` with D = H * W * C.

The bound on log p(x | y) (nats, per example), kind 'elbo':
    ELBO = E_q[log p(x | c_T)] - sum_t E_q(z_<t)[KL(q(z_t | h^enc_t) || p(z_t | h^gen_{t-1}))]
reported as bpd = decoder_bpd + kl_bpd. One posterior path z_1:T ~ q per example (eps [T, B, Z]);
the decoder term is that path's -log p(x | c_T); each step's KL is in closed form given the
path's z_<t, so their sum is an unbiased one-sample estimate of the sequential KL
KL(q(z_1:T | x, y) || p(z_1:T | y)), and bpd an unbiased estimate of -ELBO / (D log 2).
IWAE-k (kind 'iwae-<k>', Burda et al. 2016) over k whole paths:
    log (1/k) sum_i p(x | c_T^i) prod_t p(z_t^i | .) / q(z_t^i | .),
with the VAE family's estimators (`genfam.families.vae`). Both bound -log p(x | caption), each
test image with its own caption (the evaluation's phrasing): likelihood_condition 'caption'.

Training minimises the batch's -ELBO in bits/dim. Sampling: z_t from the prior (times
`sample.temperature`), then each pixel the decoder's mode or a draw from p(x | c_T).
"""
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from genfam.errors import GenfamError
from genfam.families.vae import chunked_log_mean_exp, diag_gaussian_log_prob, gaussian_kl, log_importance_weights
from genfam.family import Family
from genfam.likelihood.bits import nats_to_bpd
from genfam.likelihood.discretized import bin_centres
from genfam.nets.draw import AlignDRAW, generate, infer
from genfam.nets.vae_nets import PixelDecoder, pixel_decoder
from genfam.optim import eval_params, make_scalar_loss_update, optimizer_from_config, scalar_loss_family_state

_POSITIVE = ("steps", "latent_dim", "encoder_hidden", "generator_hidden", "read_size", "write_size",
             "caption_embed", "caption_hidden", "align_features", "num_mixtures")


def build(config, spec) -> tuple[AlignDRAW, PixelDecoder, int]:
  """The Flax model, pixel decoder and step count T described by `config.model` for `spec`."""
  m = config.model
  for key in _POSITIVE:
    if not isinstance(m[key], int) or m[key] <= 0:
      raise GenfamError(f"config.model.{key} must be a positive integer, got {m[key]!r}")
  pixels = pixel_decoder(m, spec.num_bins)
  model = AlignDRAW(tuple(spec.image_shape), pixels.params_per_pixel, m.decoder, m.num_mixtures, spec.vocab_size,
                    m.latent_dim, m.encoder_hidden, m.generator_hidden, m.read_size, m.write_size,
                    m.caption_embed, m.caption_hidden, m.align_features)
  return model, pixels, m.steps


def _inputs(batch, num_bins: int):
  """-> (int32 pixels [B, H, W, C], bin centres in [-1, 1], caption tokens int32 [B, L])."""
  if "caption" not in batch:
    raise GenfamError("AlignDRAW is conditioned on captions but the batch carries no 'caption'; "
                      "use a dataset the loader captions (every genfam dataset is)")
  x = batch["image"].astype(jnp.int32)
  return x, bin_centres(x, num_bins), jnp.asarray(batch["caption"], jnp.int32)


def elbo_parts(model, pixels, steps: int, params, batch, rng):
  """One posterior path per example: -log p(x | c_T) [B] and the closed-form KL of each step,
  summed over z's dimensions, [B, T] (nats)."""
  x, xc, tokens = _inputs(batch, pixels.num_bins)
  eps = jax.random.normal(rng, (steps, x.shape[0], model.latent_dim), xc.dtype)        # [T, B, Z]
  canvas, (q_mean, q_log_scale, p_mean, p_log_scale) = infer(model, params, xc, tokens, eps)
  decoder = -pixels.log_prob(x, canvas)                                               # [B]
  kl = jnp.sum(gaussian_kl(q_mean, q_log_scale, p_mean, p_log_scale), axis=-1)        # [T, B]
  return decoder, kl.T


def log_likelihood_fn(model, pixels, steps: int, num_dims: int):
  """-ELBO per example in bits/dim, with its parts: {'bpd', 'decoder_bpd', 'kl_bpd'} each [B]."""

  def log_likelihood(params, batch, rng):
    decoder, kl = elbo_parts(model, pixels, steps, params, batch, rng)
    decoder_bpd, kl_bpd = nats_to_bpd(decoder, num_dims), nats_to_bpd(jnp.sum(kl, axis=-1), num_dims)
    return {"bpd": decoder_bpd + kl_bpd, "decoder_bpd": decoder_bpd, "kl_bpd": kl_bpd}

  return log_likelihood


def iwae_fn(model, pixels, steps: int, num_dims: int, num_samples: int, chunk_size: int):
  """IWAE-k per example in bits/dim, -IWAE_k / (D log 2): {'bpd': [B]}. Each chunk unrolls all T
  steps for chunk_size x B paths (memory ~ chunk_size x batch unrolls), ceil(k / chunk_size) times."""

  def iwae(params, batch, rng):
    x, xc, tokens = _inputs(batch, pixels.num_bins)
    b = x.shape[0]
    chunk = max(1, min(chunk_size, num_samples))
    # paths laid out [B, chunk] so the batch axis stays leading
    x_rep, xc_rep, tokens_rep = (jnp.repeat(a, chunk, axis=0) for a in (x, xc, tokens))

    def log_weights(i):  # -> [chunk, B]
      eps = jax.random.normal(jax.random.fold_in(rng, i), (steps, b * chunk, model.latent_dim), xc.dtype)
      canvas, (q_mean, q_log_scale, p_mean, p_log_scale) = infer(model, params, xc_rep, tokens_rep, eps)
      z = q_mean + jnp.exp(q_log_scale) * eps                                           # [T, B chunk, Z]
      log_w = log_importance_weights(pixels.log_prob(x_rep, canvas),
                                     jnp.sum(diag_gaussian_log_prob(z, q_mean, q_log_scale), axis=0),
                                     jnp.sum(diag_gaussian_log_prob(z, p_mean, p_log_scale), axis=0))
      return log_w.reshape(b, chunk).T

    return {"bpd": nats_to_bpd(-chunked_log_mean_exp(log_weights, num_samples), num_dims)}

  return iwae


def loss_fn_for(model, pixels, steps: int, num_dims: int):
  """loss_fn(params, model_state, batch, rng) -> (loss, (metrics, model_state)): the batch's
  -ELBO in bits/dim. Metrics: 'decoder_bpd', 'kl_bpd', and 'kl_per_step' [T] (nats, batch mean),
  which shows where along the T steps the information goes."""

  def loss_fn(params, model_state, batch, rng):
    decoder, kl = elbo_parts(model, pixels, steps, params, batch, rng)
    decoder_bpd, kl_bpd = nats_to_bpd(jnp.mean(decoder), num_dims), nats_to_bpd(jnp.mean(jnp.sum(kl, -1)), num_dims)
    metrics = {"decoder_bpd": decoder_bpd, "kl_bpd": kl_bpd, "kl_per_step": jnp.mean(kl, axis=0)}
    return decoder_bpd + kl_bpd, (metrics, model_state)

  return loss_fn


def caption_tokens(spec, num: int, condition) -> jax.Array:
  """The captions samples are conditioned on: int32 [num, L] tokens as given, int labels [num]
  as the class prompts 'a photo of a <class>', or None as the empty caption (all padding,
  s_t = 0: a caption the model never trained on)."""
  if condition is None:
    return jnp.zeros((num, spec.caption_length), jnp.int32)
  condition = jnp.asarray(condition, jnp.int32)
  if condition.ndim == 1:
    from genfam.families.auxiliary import clip
    prompts = clip.prompt_tokens(spec, [clip.prompt(spec, k) for k in range(spec.num_classes)])   # [C, L]
    return jnp.asarray(prompts)[condition]
  if condition.shape[0] != num:
    raise GenfamError(f"AlignDRAW asked for {num} samples with {condition.shape[0]} captions; pass one per sample")
  return condition


def sample_fn(model, pixels, steps: int, spec, decode: str, temperature: float):
  """sample(params, rng, num, condition=None) -> uint8 [num, H, W, C] in {0..K-1}: z_t from the
  prior with its scale times `temperature`, each pixel the decoder's mode (decode='mode') or a
  draw from p(x | c_T) ('sample'); condition as `caption_tokens` reads it."""
  if decode not in ("mode", "sample"):
    raise GenfamError(f"unknown config.sample.decode {decode!r}; use 'mode' or 'sample'")

  def sample(params, rng, num: int, condition: Optional[jax.Array] = None):
    tokens = caption_tokens(spec, num, condition)
    k_z, k_x = jax.random.split(rng)
    eps = jax.random.normal(k_z, (steps, num, model.latent_dim))                        # [T, num, Z]
    canvas = generate(model, params, tokens, eps, temperature)                          # [num, H, W, C, P]
    x = pixels.mode(canvas) if decode == "mode" else pixels.sample(k_x, canvas)
    return x.astype(jnp.uint8)

  return sample


@functools.partial(jax.jit, static_argnums=0)
def _init_params(model, rng, x, tokens):
  """model.init under jit (one compile, not one per op)."""
  return model.init(rng, x, tokens)["params"]


def make(config, spec) -> Family:
  """The AlignDRAW family for dataset `spec`, configured by `config` (configs/aligndraw.py)."""
  model, pixels, steps = build(config, spec)
  num_dims = spec.num_dims
  tx = optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay

  def init(rng, batch):
    expected = tuple(spec.image_shape)
    if tuple(batch["image"].shape[1:]) != expected:
      raise GenfamError(f"AlignDRAW built for images {expected} got {tuple(batch['image'].shape[1:])}; "
                        "the config's data.name and the batches disagree")
    _, xc, tokens = _inputs(batch, pixels.num_bins)
    return scalar_loss_family_state(_init_params(model, rng, xc[:1], tokens[:1]), tx, ema_decay)

  extra = {}
  if config.eval.iwae_k > 0:
    extra[f"iwae-{config.eval.iwae_k}"] = iwae_fn(model, pixels, steps, num_dims, config.eval.iwae_k,
                                                  config.eval.iwae_chunk)
  return Family(
      name="aligndraw",
      init=init,
      update=make_scalar_loss_update(loss_fn_for(model, pixels, steps, num_dims), tx, ema_decay),
      eval_params=eval_params,
      log_likelihood=log_likelihood_fn(model, pixels, steps, num_dims),
      likelihood_kind="elbo",
      sample=sample_fn(model, pixels, steps, spec, config.sample.decode, config.sample.temperature),
      extra_likelihoods=extra,
      likelihood_condition="caption",
      likelihood_note="an upper bound on -log2 p(x | caption) / D, each test image with its own caption",
  )
