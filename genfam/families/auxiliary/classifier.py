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

Noise-conditional variant (model.noise_conditional, configs/classifier.py:noisy): the
classifier that guides diffusion sampling (Dhariwal & Nichol). It reads (x_t, t), a training
image noised by the forward process of config.diffusion (schedule, num_steps: those of the
model it will guide; `genfam.diffusion.noised`, t ~ U{0 .. T-1}), and is trained with the
same loss on those states, so its class head is log p(y | x_t, t). Test metrics: each head's
accuracy at uniform t (headline 'class_accuracy') and the class accuracy per t-bucket
('class_accuracy_t<first>_<last>'), each with its chance level. Exports: 'log_prob'
(x_t, t) -> log p(y | x_t, t) [B, C] and 'guidance_objective' (x_t, t, y) -> log p(y | x_t, t)
[B], the function whose gradient in x_t the sampler follows (`genfam.diffusion.samplers`).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam.diffusion import noised
from genfam.family import Family
from genfam.nets.image_encoder import ConvEncoder, pixels_to_unit
from genfam.nets.noisy_encoder import NoisyConvEncoder
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


class NoisyClassifier(nn.Module):
  """NoisyConvEncoder trunk over (x_t, t) -> features [B, F] -> one linear head per target."""
  head_sizes: tuple
  channels: tuple = (32, 64)
  convs_per_stage: int = 1
  features: int = 128
  dtype: str = "float32"       # convolution product dtype (float64: the tests' finite differences)

  def setup(self):
    self.trunk = NoisyConvEncoder(tuple(self.channels), self.convs_per_stage, self.features, dtype=self.dtype)
    self.heads = [nn.Dense(n) for n in self.head_sizes]

  def __call__(self, x_t, t):  # float [B, H, W, C], int [B] -> (features [B, F], tuple of logits [B, n_h])
    features = self.trunk(x_t, t)
    return features, tuple(head(features) for head in self.heads)


def cross_entropy(logits, labels):
  """-log softmax(logits)[label]: [B, n], [B] -> [B]."""
  return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]


def heads_loss(names, logits, batch):
  """The loss, sum over heads of the mean cross-entropy, and each head's batch accuracy."""
  loss, metrics = 0.0, {}
  for name, z, y in zip(names, logits, targets(batch, len(names))):
    loss += cross_entropy(z, y).mean()
    metrics[f"{name}_accuracy"] = (z.argmax(-1) == y).mean()
  return loss, metrics


def heads_accuracy(names, logits, batch) -> dict:
  """{'<head>_accuracy': [B] 1.0 / 0.0, '<head>_accuracy_chance': [B] 1 / n_h}."""
  out = {}
  for name, z, y in zip(names, logits, targets(batch, len(names))):
    out[f"{name}_accuracy"] = (z.argmax(-1) == y).astype(jnp.float32)
    out[f"{name}_accuracy_chance"] = jnp.full(y.shape, 1.0 / z.shape[-1], jnp.float32)
  return out


def make(config, spec) -> Family:
  m = config.model
  if m.get("noise_conditional", False):
    return make_noisy(config, spec)
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
    loss, metrics = heads_loss(names, logits, batch)
    return loss, (metrics, model_state)

  def test_metrics(params, batch, rng):
    """{'<head>_accuracy': [B] 1.0 / 0.0, '<head>_accuracy_chance': [B] 1 / n_h}."""
    del rng
    _, logits = model.apply(params, batch["image"])
    return heads_accuracy(names, logits, batch)

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


def make_noisy(config, spec) -> Family:
  """The noise-conditional classifier (module docstring): trained on (x_t, t) of config.diffusion."""
  m = config.model
  names = head_names(spec, bool(m.attribute_heads))
  sizes = (spec.num_classes, *(len(v) for v in spec.attribute_values))[:len(names)]
  model = NoisyClassifier(head_sizes=sizes, channels=tuple(m.channels), convs_per_stage=m.convs_per_stage,
                          features=m.features, dtype=m.get("dtype", "float32"))
  sched = noised.schedule_of(config.diffusion)
  tx = optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay

  def init(rng, batch):
    x = jnp.zeros((1, *batch["image"].shape[1:]), jnp.float32)
    return scalar_loss_family_state(model.init(rng, x, jnp.zeros((1,), jnp.int32)), tx, ema_decay)

  def loss_fn(params, model_state, batch, rng):
    x_t, t = noised.noised(sched, batch["image"], spec.num_bins, rng)          # [B, H, W, C], [B]
    _, logits = model.apply(params, x_t, t)
    loss, metrics = heads_loss(names, logits, batch)
    return loss, (metrics, model_state)

  def test_metrics(params, batch, rng):
    """Each head's accuracy at t ~ U{0..T-1} and the class accuracy per t-bucket ([B] each), with chances."""
    rng_uniform, rng_buckets = jax.random.split(rng)
    _, logits = model.apply(params, *noised.noised(sched, batch["image"], spec.num_bins, rng_uniform))
    out = heads_accuracy(names, logits, batch)
    for k in range(noised.NUM_BUCKETS):
      rng_t, rng_noise = jax.random.split(jax.random.fold_in(rng_buckets, k))
      t = noised.bucket_timesteps(rng_t, sched.num_steps, k, batch["label"].shape[0])
      _, logits = model.apply(params, *noised.noised(sched, batch["image"], spec.num_bins, rng_noise, t))
      out[f"{CLASS_HEAD}_accuracy_{noised.bucket_name(sched.num_steps, k)}"] = (
          logits[0].argmax(-1) == batch["label"]).astype(jnp.float32)
    return out

  def log_prob(params, x_t, t):
    """log p(y | x_t, t) of every class: float [B, H, W, C], int [B] -> [B, C]."""
    return jax.nn.log_softmax(model.apply(params, x_t, t)[1][0])

  def guidance_objective(params, x_t, t, labels):
    """log p(y | x_t, t) of the given labels: [B, H, W, C], [B], int [B] -> [B] (its x_t-gradient guides)."""
    return -cross_entropy(model.apply(params, x_t, t)[1][0], jnp.asarray(labels, jnp.int32))

  return Family(name="classifier", init=init, update=make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=eval_params, log_likelihood=None, likelihood_kind="", sample=None,
                test_metrics=test_metrics, headline_metric=f"{CLASS_HEAD}_accuracy",
                exports={"log_prob": log_prob, "guidance_objective": guidance_objective})
