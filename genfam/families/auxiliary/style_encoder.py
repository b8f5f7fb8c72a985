"""The GAN's style encoder (Reed et al. 2016, section 4.4): an image back to the generator's noise z.

A frozen conditional GAN (configs/gan.py, its workdir `model.generator_workdir`, restored by the loop:
`genfam.loop.frozen.family_inputs` hands `make` its `Frozen` generator) draws x = G(z, c) from
z ~ N(0, I_L) and the condition c of each training example (its label, or its caption's frozen text
embedding), quantized to the stored pixels as a sample is. The encoder S (a small CNN,
`genfam.nets.image_encoder.ConvEncoder`, then a linear map to R^L) reads the image alone and is
trained by the one loop to regress the noise:
  L_S = E_{z, c} ||z - S(G(z, c))||^2 / L        (mean squared error per latent dimension)
G is never updated. Style transfer: s = S(x) of a real image x, then G(s, c') under another
condition c' renders x's style (pose, thickness, ...) with c''s content.

Not generative (no likelihood, no sampler): test metrics per test image (`test_metrics`), with c the
test image's own condition and z a fresh draw:
  latent_explained 1 - min(e, 1), e = ||z - S(G(z, c))||^2 / L the latent error of a generated image:
                   the share of z's unit variance per dimension that S recovers (the headline; 1 for a
                   perfect inverse, 0 for S = 0 or worse: the floor binds only for an encoder worse than
                   predicting 0, such as an untrained one; training logs e itself as 'latent_mse')
  image_rmse       sqrt(mean_pixels (G(S(x), c) - y)^2) of the real test image, y = x / (K - 1) in
                   [0, 1]: how well the generator redraws a real image from its inferred style
Both lie in [0, 1], as every test metric of the loop's reports.
Exports: 'encode' (image uint8 [B, H, W, C]) -> z [B, L].
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam.errors import GenfamError
from genfam.family import Family
from genfam.nets.image_encoder import ConvEncoder, pixels_to_unit
from genfam.optim import eval_params, make_scalar_loss_update, optimizer_from_config, scalar_loss_family_state


class StyleEncoder(nn.Module):
  """image [B, H, W, C] in [-1, 1] -> z-hat [B, latent_dim]."""
  latent_dim: int
  channels: tuple = (32, 64)
  convs_per_stage: int = 1
  features: int = 128

  @nn.compact
  def __call__(self, x):
    h = ConvEncoder(self.channels, self.convs_per_stage, self.features)(x)
    return nn.Dense(self.latent_dim)(h)


def latent_mse(z_hat, z):  # [B, L], [B, L] -> [B]
  """||z - z_hat||^2 / L per example."""
  return jnp.mean((z_hat - z) ** 2, axis=-1)


def make(config, spec, generator=None) -> Family:
  """The style encoder of the frozen GAN `generator` (a `genfam.loop.frozen.Frozen` of configs/gan.py,
  model.generator_workdir) for dataset `spec`."""
  if generator is None:
    raise GenfamError("the style encoder needs the frozen GAN of model.generator_workdir: set "
                      "--config.model.generator_workdir=DIR (a configs/gan.py workdir) and build the family as the "
                      "loop does (genfam.loop.frozen.make_family), which restores it")
  if generator.config.get("family") != "gan":
    raise GenfamError(f"model.generator_workdir holds a {generator.config.get('family')!r} model, not a GAN")
  m = config.model
  latent_dim, num_bins = int(generator.config.model.latent_dim), spec.num_bins
  generate, condition_of, g_params = generator.functions["generate"], generator.functions["condition"], generator.params
  net = StyleEncoder(latent_dim, tuple(m.channels), m.convs_per_stage, m.features)
  tx = optimizer_from_config(config.optim)

  def encode(params, image):  # uint8 [B, H, W, C] -> [B, L]
    return net.apply({"params": params}, pixels_to_unit(jnp.asarray(image), num_bins))

  def generated(batch, rng):  # -> (z [B, L], uint8 [B, H, W, C]) of the frozen G under the batch's conditions
    c = jax.lax.stop_gradient(condition_of(g_params, batch))
    z = jax.random.normal(rng, (c.shape[0], latent_dim))
    mean = jax.lax.stop_gradient(generate(g_params, z, c))
    return z, jnp.clip(jnp.floor(mean * num_bins), 0, num_bins - 1).astype(jnp.uint8)

  def init(rng, batch):
    if tuple(batch["image"].shape[1:]) != tuple(spec.image_shape):
      raise GenfamError(f"style encoder built for images {tuple(spec.image_shape)} got "
                        f"{tuple(batch['image'].shape[1:])}; check config.data.name")
    params = jax.jit(net.init)(rng, jnp.zeros((1, *spec.image_shape), jnp.float32))["params"]
    return scalar_loss_family_state(params, tx, config.optim.ema_decay)

  def loss_fn(params, model_state, batch, rng):
    z, image = generated(batch, rng)
    loss = jnp.mean(latent_mse(encode(params, image), z))
    return loss, ({"latent_mse": loss}, model_state)

  def test_metrics(params, batch, rng):
    z, image = generated(batch, rng)
    mse = latent_mse(encode(params, image), z)
    c = condition_of(g_params, batch)
    redrawn = generate(g_params, encode(params, batch["image"]), c)                         # [B, H, W, C] in (0, 1)
    y = jnp.asarray(batch["image"], jnp.float32) / (num_bins - 1)
    rmse = jnp.sqrt(jnp.mean((redrawn - y).reshape(y.shape[0], -1) ** 2, axis=-1))
    return {"latent_explained": 1.0 - jnp.minimum(mse, 1.0), "image_rmse": rmse}

  return Family(name="style_encoder", init=init,
                update=make_scalar_loss_update(loss_fn, tx, config.optim.ema_decay),
                eval_params=eval_params, log_likelihood=None, likelihood_kind="", sample=None,
                test_metrics=test_metrics, headline_metric="latent_explained", exports={"encode": encode})
