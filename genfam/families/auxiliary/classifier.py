"""The domain classifier: a small CNN predicting an image's class and each of its
measured attributes (brightness, size, width, texture), trained by the one loop.

It is not generative: it has no likelihood and no sampler, and reports its
own test metrics instead (`Family.test_metrics`): the accuracy of each head,
with its chance level 1 / (number of values) of a uniform guess. Its
penultimate features (`exports['features']`, [B, F]) are what the
comparison's FID and KID are computed on, since Inception features cannot be
downloaded and do not fit 28x28 grey images; `exports['logits']` and
`exports['predict']` check whether a sample shows its caption's class and
attributes.

Loss: the sum over heads h (class, then one per attribute) of the mean
cross-entropy, L = sum_h -1/B sum_i log softmax(z_h(x_i))[y_h,i], all heads
weighted 1.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam.family import Family
from genfam.nets.image_encoder import ConvEncoder, pixels_to_unit
from genfam.optim import eval_params, make_scalar_loss_update, optimizer_from_config, scalar_loss_family_state

CLASS_HEAD = "class"


class Classifier(nn.Module):
  """ConvEncoder trunk -> features [B, F] -> one linear head per target.

  head_sizes: the number of values of each head, class head first.
  """
  head_sizes: tuple
  num_bins: int
  channels: tuple = (32, 64)
  convs_per_stage: int = 2
  features: int = 128

  def setup(self):
    self.trunk = ConvEncoder(tuple(self.channels), self.convs_per_stage, self.features)
    self.heads = [nn.Dense(n) for n in self.head_sizes]

  def embed(self, image):  # [B, H, W, C] uint8 -> [B, F]
    return self.trunk(pixels_to_unit(image, self.num_bins))

  def __call__(self, image):  # [B, H, W, C] uint8 -> (features [B, F], tuple of logits [B, n_h])
    features = self.embed(image)
    return features, tuple(head(features) for head in self.heads)


def head_names(spec, attributes: bool) -> tuple:
  """('class', *spec.attribute_names) with attribute heads, else ('class',)."""
  return (CLASS_HEAD, *spec.attribute_names) if attributes else (CLASS_HEAD,)


def targets(batch, num_heads: int):
  """The labels of each head: (label [B], attributes[:, 0] [B], ...)."""
  return (batch["label"], *(batch["attributes"][:, a] for a in range(num_heads - 1)))


def make(config, spec) -> Family:
  m = config.model
  names = head_names(spec, bool(m.attribute_heads))
  sizes = (spec.num_classes, *(len(v) for v in spec.attribute_values))[:len(names)]
  model = Classifier(head_sizes=sizes, num_bins=spec.num_bins, channels=tuple(m.channels),
                     convs_per_stage=m.convs_per_stage, features=m.features)
  tx = optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay

  def init(rng, batch):
    params = model.init(rng, batch["image"][:1])
    return scalar_loss_family_state(params, tx, ema_decay)

  def head_logits(params, image):
    """uint8 [B, H, W, C] -> {head: logits [B, n_h]}, heads 'class' then the attributes."""
    _, logits = model.apply(params, image)
    return dict(zip(names, logits))

  def loss_fn(params, model_state, batch, rng):
    del rng
    _, logits = model.apply(params, batch["image"])
    loss, metrics = 0.0, {}
    for name, z, y in zip(names, logits, targets(batch, len(names))):
      ce = -jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1)[:, 0]   # [B]
      loss += ce.mean()
      metrics[f"{name}_accuracy"] = (z.argmax(-1) == y).mean()
    return loss, (metrics, model_state)

  def test_metrics(params, batch, rng):
    """{'<head>_accuracy': [B] 1.0 / 0.0, '<head>_accuracy_chance': [B] 1 / n_h}."""
    del rng
    _, logits = model.apply(params, batch["image"])
    out = {}
    for name, z, y in zip(names, logits, targets(batch, len(names))):
      out[f"{name}_accuracy"] = (z.argmax(-1) == y).astype(jnp.float32)
      out[f"{name}_accuracy_chance"] = jnp.full(y.shape, 1.0 / z.shape[-1], jnp.float32)
    return out

  def features(params, image):
    """Penultimate features: uint8 [B, H, W, C] -> float32 [B, F]."""
    return model.apply(params, image, method=Classifier.embed)

  def predict(params, image):
    """The most likely value of each head: uint8 [B, H, W, C] -> {head: int32 [B]}."""
    return {k: z.argmax(-1).astype(jnp.int32) for k, z in head_logits(params, image).items()}

  return Family(name="classifier", init=init, update=make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=eval_params, log_likelihood=None, likelihood_kind="", sample=None,
                test_metrics=test_metrics, headline_metric=f"{CLASS_HEAD}_accuracy",
                exports={"features": features, "logits": head_logits, "predict": predict})
