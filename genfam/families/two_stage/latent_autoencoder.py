"""The latent autoencoder family: stage 1 of latent diffusion (Stable Diffusion's recipe).

Model. A VAE whose latent is a SPATIAL grid z in R^{h x w x c} (7 x 7 x 4 for 28 x 28 images:
each resolution level halves the side, `genfam.nets.vae_nets.level_sizes`), with
  q(z|x) = N(mean(x), diag exp(log_scale(x))^2)   a convolutional encoder, per latent cell,
  p(x|z)  = the VAE family's discrete pixel decoder over the K bins (`genfam.nets.vae_nets.PixelDecoder`:
            discretized logistic mixture, logistic or Gaussian), pixels independent given z,
  p(z)    = N(0, I) (the prior of this run's own bound and samples; stage 2 replaces it by a
            diffusion prior, configs/latent_diffusion.py).

Training (Rombach et al.'s first stage): minimise reconstruction + beta KL,
  loss = [mean_B -log p(x|z) + beta mean_B KL(q(z|x) || N(0, I))] / (D log 2),  z ~ q(z|x) one draw,
with beta = model.kl_weight << 1: latents that keep the image's detail for the decoder while the KL
keeps them near unit scale (for any beta > 0 a rescaling z -> c z, which the decoder can undo, is
optimal at E[mean^2 + std^2] = 1 per dimension), so stage 2 needs no rescaling of its own.

Reported likelihood. Whatever beta trained it, the honest beta = 1 ELBO in bits/dim (kind 'elbo',
an upper bound on -log2 p(x) / D of the discrete data): bpd = recon_bpd + kl_bpd, the reconstruction
a one-draw estimate and the KL in closed form (`genfam.families.vae.gaussian_kl`). With beta << 1
its KL part is large; the two-stage bound of configs/latent_diffusion.py replaces N(0, I) by the
learned prior.

Exports (pure functions of eval_params that `genfam.loop.frozen` restores for a stage-2 run):
  encode(params, image uint8 [B, H, W, C]) -> (mean, log_scale), each float32 [B, h, w, c]
  decoder_nll_bits(params, image uint8 [B, H, W, C], z [B, h, w, c]) -> -log2 p(x|z) / D [B], bits/dim
  decode(params, z [B, h, w, c], rng, how='mode') -> uint8 [B, H, W, C]: each pixel's most probable
      bin (how='mode') or a draw from p(x|z) (how='sample')
(the same names and units as the vqvae family's exports).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam.errors import GenfamError
from genfam.families.two_stage.discrete_autoencoder import GridDecoder, GridEncoder
from genfam.families.vae import gaussian_kl
from genfam.family import Family
from genfam.likelihood.bits import nats_to_bpd
from genfam.likelihood.discretized import bin_centres
from genfam.nets.vae_nets import PixelDecoder, level_sizes, pixel_decoder
from genfam.optim import eval_params, make_scalar_loss_update, optimizer_from_config, scalar_loss_family_state

DECODES = ("mode", "sample")


class LatentAutoencoder(nn.Module):
  """Encoder and decoder (the vqvae family's grid networks: level 0 at the stored size, each further
  level halving the side); the encoder's 2c output channels are q's mean and log-scale. Call a
  method with `apply(..., method=)`."""
  image_shape: tuple
  latent_channels: int
  widths: Sequence[int]
  blocks: Sequence[int]
  params_per_pixel: int
  norm: str = "layer"
  dtype: Any = jnp.float32

  def setup(self):
    self.encoder = GridEncoder(self.widths, self.blocks, 2 * self.latent_channels, self.norm, self.dtype)
    self.decoder = GridDecoder(self.image_shape, self.widths, self.blocks, self.params_per_pixel, self.norm,
                               self.dtype)

  def encode(self, x):  # [B, H, W, C] on [-1, 1] -> mean, log_scale, each float32 [B, h, w, c]
    mean, log_scale = jnp.split(self.encoder(x).astype(jnp.float32), 2, axis=-1)
    return mean, log_scale

  def decode(self, z):  # [B, h, w, c] -> [B, H, W, C, P]
    return self.decoder(z).astype(jnp.float32)

  def __call__(self, x):
    mean, _ = self.encode(x)
    return self.decode(mean)


def latent_shape(config, spec) -> tuple:
  """(h, w, c) of the latent grid of `config.model` for dataset `spec`."""
  m = config.model
  h, w = level_sizes(spec.image_shape[0], spec.image_shape[1], len(m.widths))[-1]
  return (h, w, int(m.latent_channels))


def build(config, spec) -> tuple[LatentAutoencoder, PixelDecoder]:
  """The Flax model and pixel decoder of `config.model` for `spec`, checked."""
  m = config.model
  if len(m.widths) != len(m.blocks) or not m.widths:
    raise GenfamError(f"config.model.widths {tuple(m.widths)} and config.model.blocks {tuple(m.blocks)} must be "
                      "non-empty and of equal length (one per level)")
  if m.latent_channels < 1:
    raise GenfamError(f"config.model.latent_channels={m.latent_channels}: set it >= 1")
  if not m.kl_weight > 0:
    raise GenfamError(f"config.model.kl_weight={m.kl_weight}: the KL weight beta must be > 0 (e.g. 0.01)")
  pixels = pixel_decoder(m, spec.num_bins)
  model = LatentAutoencoder(tuple(spec.image_shape), int(m.latent_channels), tuple(m.widths), tuple(m.blocks),
                            pixels.params_per_pixel, m.norm, m.get("dtype", "float32"))
  return model, pixels


def sum_latent(v):  # [B, h, w, c] -> [B]
  return jnp.sum(v.reshape(v.shape[0], -1), axis=-1)


def gaussian_entropy(log_scale):  # [B, ...] -> [B] nats
  """H[N(mean, diag exp(log_scale)^2)] = sum_i (log_scale_i + 1/2 log(2 pi e)), in nats."""
  return sum_latent(log_scale + 0.5 * (1.0 + jnp.log(2.0 * jnp.pi)))


def make(config, spec) -> Family:
  """The latent autoencoder Family for dataset `spec` (genfam.data.spec.DatasetSpec)."""
  model, pixels = build(config, spec)
  beta = float(config.model.kl_weight)
  decode_kind, temperature = config.sample.decode, float(config.sample.temperature)
  if decode_kind not in DECODES:
    raise GenfamError(f"unknown config.sample.decode {decode_kind!r}; use one of {DECODES}")
  tx = optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  shape, num_bins, num_dims = tuple(spec.image_shape), spec.num_bins, spec.num_dims
  z_shape = latent_shape(config, spec)

  def encode(params, image):  # uint8 [B, H, W, C] -> mean, log_scale [B, h, w, c]
    return model.apply({"params": params}, bin_centres(jnp.asarray(image, jnp.int32), num_bins),
                       method=LatentAutoencoder.encode)

  def decoder_nll(params, image, z):  # -> -log p(x|z) [B] nats
    out = model.apply({"params": params}, z, method=LatentAutoencoder.decode)      # [B, H, W, C, P]
    return -pixels.log_prob(jnp.asarray(image, jnp.int32), out)

  def decoder_nll_bits(params, image, z):  # -> -log2 p(x|z) / D [B] bits/dim
    return nats_to_bpd(decoder_nll(params, image, z), num_dims)

  def decode(params, z, rng=None, how: str = "mode"):  # [B, h, w, c] -> uint8 [B, H, W, C]
    if how not in DECODES:
      raise GenfamError(f"unknown decode {how!r}; use one of {DECODES}")
    out = model.apply({"params": params}, z, method=LatentAutoencoder.decode)      # [B, H, W, C, P]
    return (pixels.mode(out) if how == "mode" else pixels.sample(rng, out)).astype(jnp.uint8)

  def elbo_parts(params, batch, rng):
    """One-draw -log p(x|z) [B], KL(q || N(0, I)) [B] (closed form), and q's mean and log-scale."""
    mean, log_scale = encode(params, batch["image"])
    z = mean + jnp.exp(log_scale) * jax.random.normal(rng, mean.shape, mean.dtype)
    kl = sum_latent(gaussian_kl(mean, log_scale, jnp.zeros_like(mean), jnp.zeros_like(mean)))
    return decoder_nll(params, batch["image"], z), kl, mean, log_scale

  def init(rng, batch):
    if tuple(batch["image"].shape[1:]) != shape:
      raise GenfamError(f"latent autoencoder built for images {shape}, got {tuple(batch['image'].shape[1:])}; "
                        "use the dataset the config names")
    params = jax.jit(model.init)(rng, jnp.zeros((1,) + shape, jnp.float32))["params"]
    return scalar_loss_family_state(params, tx, ema_decay)

  def loss_fn(params, model_state, batch, rng):
    """[mean recon + beta mean KL] / (D log 2); metrics: the unweighted beta = 1 ELBO and its parts."""
    recon, kl, mean, log_scale = elbo_parts(params, batch, rng)
    loss = nats_to_bpd(jnp.mean(recon) + beta * jnp.mean(kl), num_dims)
    metrics = {"elbo_bpd": nats_to_bpd(jnp.mean(recon + kl), num_dims),
               "recon_bpd": nats_to_bpd(jnp.mean(recon), num_dims),
               "kl_bpd": nats_to_bpd(jnp.mean(kl), num_dims),
               "latent_rms": jnp.sqrt(jnp.mean(mean ** 2 + jnp.exp(2.0 * log_scale))),   # ~1 at the KL's optimum
               "posterior_std": jnp.mean(jnp.exp(log_scale))}
    return loss, (metrics, model_state)

  def log_likelihood(params, batch, rng):
    """-ELBO at beta = 1 (upper bound), bits/dim: {'bpd', 'recon_bpd', 'kl_bpd'}, each [B]."""
    recon, kl, _, _ = elbo_parts(params, batch, rng)
    recon_bpd, kl_bpd = nats_to_bpd(recon, num_dims), nats_to_bpd(kl, num_dims)
    return {"bpd": recon_bpd + kl_bpd, "recon_bpd": recon_bpd, "kl_bpd": kl_bpd}

  def draw(params, rng, num):
    k_z, k_x = jax.random.split(rng)
    z = temperature * jax.random.normal(k_z, (num,) + z_shape, jnp.float32)
    return decode(params, z, k_x, decode_kind)

  draw = jax.jit(draw, static_argnums=2)

  def sample(params, rng, num, condition=None):
    """uint8 [num, H, W, C]: z ~ N(0, temperature^2 I), decoded; unconditional."""
    return draw(params, rng, int(num))

  return Family(name="latent_autoencoder", init=init, update=make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=eval_params, log_likelihood=log_likelihood, likelihood_kind="elbo", sample=sample,
                likelihood_note=f"the beta = 1 ELBO of an autoencoder trained with KL weight beta = {beta:g}",
                exports={"encode": encode, "decoder_nll_bits": decoder_nll_bits, "decode": decode})
