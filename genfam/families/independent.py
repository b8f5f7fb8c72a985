"""Independent-pixel baseline: a categorical over K bins for every pixel.

p(x) = prod_d Cat(x_d; softmax(logits_d)), optionally with logits per class
label. Its exact bits/dim is what a model that ignores all structure between
pixels reaches: the floor every other family must beat. It is also the
fastest family, which makes it the loop's test subject.
"""
import jax
import jax.numpy as jnp

from genfam.family import Family
from genfam.likelihood import bits
from genfam.optim import (eval_params, make_scalar_loss_update, optimizer_from_config,
                          scalar_loss_family_state)


def log_prob(logits, image, label, conditional: bool):
  """Per-example log p(x) in nats. logits [L, H, W, C, K]; image [B, H, W, C] int.

  A gather from the flat log-softmax table: index (l * D + d) * K + x_d, so no
  [B, D, K] tensor is ever built.
  """
  num_tables, num_bins = logits.shape[0], logits.shape[-1]
  log_p = jax.nn.log_softmax(logits.reshape(num_tables, -1, num_bins), axis=-1).reshape(-1)
  pixels = image.reshape(image.shape[0], -1).astype(jnp.int32)                  # [B, D]
  table = (label if conditional else jnp.zeros_like(label)).astype(jnp.int32)    # [B]
  d = jnp.arange(pixels.shape[1], dtype=jnp.int32)
  index = (table[:, None] * pixels.shape[1] + d[None]) * num_bins + pixels
  return log_p[index].sum(axis=1)


def make(config, spec) -> Family:
  conditional = bool(config.model.class_conditional)
  num_tables = spec.num_classes if conditional else 1
  num_dims = spec.num_dims
  tx = optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay

  def init(rng, batch):
    del rng, batch
    params = {"logits": jnp.zeros((num_tables,) + tuple(spec.image_shape) + (spec.num_bins,))}
    return scalar_loss_family_state(params, tx, ema_decay)

  def log_likelihood(params, batch, rng):
    del rng
    nats = -log_prob(params["logits"], batch["image"], batch["label"], conditional)
    return {"bpd": bits.nats_to_bpd(nats, num_dims)}

  def loss_fn(params, model_state, batch, rng):
    bpd = log_likelihood(params, batch, rng)["bpd"]
    return bpd.mean(), ({"bpd": bpd.mean()}, model_state)

  def sample(params, rng, num, condition=None):
    label = condition if (conditional and condition is not None) else jnp.zeros((num,), jnp.int32)
    table = params["logits"][label]                                  # [num, H, W, C, K]
    return jax.random.categorical(rng, table).astype(jnp.uint8)      # [num, H, W, C]

  return Family(name="independent", init=init, update=make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=eval_params, log_likelihood=log_likelihood, likelihood_kind="exact",
                sample=sample, likelihood_condition="label" if conditional else "")
