"""Contrastive text and image encoders (CLIP, small), trained by the one loop.

A transformer over caption tokens (`genfam.nets.text_encoder`) and a conv net
over images (`genfam.nets.image_encoder`) each end in a linear projection to
E dimensions and are normalised to unit length: t_i = f(caption_i) / |f(.)|,
v_i = g(image_i) / |g(.)|. With s = exp(log_scale) the learned inverse
temperature (s = 1 / tau, started at 1 / init_temperature and clipped at 100,
as in CLIP), the logits of a batch of B pairs are z_ij = s * t_i . v_j and the
loss is the symmetric InfoNCE

  L = 1/2 [ -1/B sum_i log softmax_j(z_ij)|_{j=i}  -  1/B sum_j log softmax_i(z_ij)|_{i=j} ],

caption-to-image and image-to-caption cross-entropy with the matched pair as
the target. (B identical embeddings give exactly log B; matched orthonormal
ones give log(1 + (B - 1) e^{-s}) -> 0 as the temperature falls.)

It is not generative (no likelihood, no sampler) and reports test metrics
(`Family.test_metrics`), each with its chance level:
- zero-shot class accuracy: an image's class is the prompt "a photo of a
  <class>" nearest to it (chance 1 / C);
- zero-shot attribute accuracy: for each attribute, the value v whose prompt
  embedding, the normalised mean over classes c of "a photo of a <v> <c>", is
  nearest (chance 1 / number of values);
- caption-to-image and image-to-caption recall@1 and @5 within galleries: each
  evaluation batch of eval.batch_size test examples is a gallery (see
  `recall_at_k` for ties and identical captions; chance k / gallery size).
Its frozen encoders (`exports`: 'encode_text', 'encode_image', 'agreement',
the image-text cosine) serve text-conditional families and the comparison's
text-agreement score.

Noise-conditional variant (model.noise_conditional, configs/clip.py:noisy): the image tower
that guides diffusion sampling toward a sentence (GLIDE's CLIP guidance). Its image encoder
reads (x_t, t), a training image noised by the forward process of config.diffusion (the guided
model's schedule and T; `genfam.diffusion.noised`, t ~ U{0 .. T-1}), v = g(x_t, t) / |g|, and is
trained with the same InfoNCE against the FROZEN text encoder of a trained configs/clip.py run
(model.text_encoder_workdir, restored by the loop and handed to `make` as `encode_text`; no
gradient reaches it), with its own learned temperature. Its test metrics are the clean model's,
on noisy images at uniform t, plus the zero-shot class accuracy per t-bucket. Exports:
'encode_noisy_image' (x_t, t) -> v [B, E]; 'encode_text' (the frozen encoder); 'logit_scale';
'guidance_objective' (x_t, t, tokens) -> s <v(x_t, t), e(tokens)> [B], the logit of the pair
(GLIDE's), whose gradient in x_t the sampler follows.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genfam.data import captions
from genfam.diffusion import noised
from genfam.errors import GenfamError
from genfam.family import Family
from genfam.nets.image_encoder import ConvEncoder, pixels_to_unit
from genfam.nets.noisy_encoder import NoisyConvEncoder
from genfam.nets.text_encoder import TextEncoder
from genfam.optim import eval_params, make_scalar_loss_update, optimizer_from_config, scalar_loss_family_state

MAX_LOGIT_SCALE = 100.0
RECALL_KS = (1, 5)


def normalize(x, eps: float = 1e-6):
  """x / |x| along the last axis."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def info_nce(text, image, logit_scale):
  """Symmetric InfoNCE of matched pairs (text_i, image_i).

  text, image: [B, E] unit-norm embeddings; logit_scale: s = 1 / temperature.
  -> scalar 1/2 [CE_rows + CE_cols] of z = s * text @ image.T with targets on
  the diagonal (formula in the module docstring).
  """
  logits = logit_scale * text @ image.T                                 # [B, B]
  diagonal = jnp.diagonal(logits)
  text_to_image = jax.nn.logsumexp(logits, axis=1) - diagonal           # [B]
  image_to_text = jax.nn.logsumexp(logits, axis=0) - diagonal           # [B]
  return 0.5 * (text_to_image.mean() + image_to_text.mean())


def recall_at_k(scores, mask, same, k: int):
  """Recall@k of queries i whose right item is item i, within one gallery.

  scores: [B, B] float, scores[i, j] = similarity of query i and item j.
  mask:   [B] bool, the real examples (padding rows are neither queries that
          count nor items of the gallery).
  same:   [B, B] bool, item j is as right for query i as item i is (for
          captions: the two captions are the same tokens, so no text model can
          tell them apart); same[i, i] must be True.
  The rank of query i is the number of competitors j (real, not `same`) that
  score at least as high as item i (ties count against), and the query is a
  hit when rank < k. Its chance level is min(1, k / (number of competitors + 1)),
  the hit probability of random scores.
  -> (hit [B] float 1.0 / 0.0, chance [B] float).
  """
  competitor = mask[None, :] & ~same                                      # [B, B]
  rank = (competitor & (scores >= jnp.diagonal(scores)[:, None])).sum(1)  # [B]
  hit = (rank < k).astype(jnp.float32)
  chance = jnp.minimum(1.0, k / (competitor.sum(1) + 1.0))
  return hit, chance


class CLIP(nn.Module):
  """Text tower and image tower, each projected to E and normalised, and log s."""
  vocab_size: int
  caption_length: int
  num_bins: int
  embed_dim: int = 64
  text_width: int = 64
  text_layers: int = 2
  text_heads: int = 4
  channels: tuple = (32, 64)
  convs_per_stage: int = 2
  image_features: int = 128
  init_temperature: float = 0.07

  def setup(self):
    self.text = TextEncoder(self.vocab_size, self.caption_length, self.text_width, self.text_layers,
                            self.text_heads)
    self.text_projection = nn.Dense(self.embed_dim, use_bias=False)
    self.image = ConvEncoder(tuple(self.channels), self.convs_per_stage, self.image_features)
    self.image_projection = nn.Dense(self.embed_dim, use_bias=False)
    self.log_scale = self.param("log_scale", nn.initializers.constant(-math.log(self.init_temperature)), ())

  def encode_text(self, tokens):  # [B, L] int32 -> [B, E] unit norm
    return normalize(self.text_projection(self.text(tokens)))

  def encode_image(self, image):  # [B, H, W, C] uint8 -> [B, E] unit norm
    return normalize(self.image_projection(self.image(pixels_to_unit(image, self.num_bins))))

  def logit_scale(self):  # -> s = 1 / temperature, at most MAX_LOGIT_SCALE
    return jnp.exp(jnp.minimum(self.log_scale, math.log(MAX_LOGIT_SCALE)))

  def __call__(self, image, tokens):  # -> (text [B, E], image [B, E], s)
    return self.encode_text(tokens), self.encode_image(image), self.logit_scale()


class NoisyImageTower(nn.Module):
  """(x_t [B, H, W, C] float, t [B] int) -> unit-norm [B, E]; and log s (the learned inverse temperature)."""
  embed_dim: int
  channels: tuple = (32, 64)
  convs_per_stage: int = 1
  image_features: int = 128
  init_temperature: float = 0.07
  dtype: str = "float32"       # convolution product dtype (float64: the tests' finite differences)

  def setup(self):
    self.image = NoisyConvEncoder(tuple(self.channels), self.convs_per_stage, self.image_features, dtype=self.dtype)
    self.image_projection = nn.Dense(self.embed_dim, use_bias=False)
    self.log_scale = self.param("log_scale", nn.initializers.constant(-math.log(self.init_temperature)), ())

  def logit_scale(self):  # -> s = 1 / temperature, at most MAX_LOGIT_SCALE
    return jnp.exp(jnp.minimum(self.log_scale, math.log(MAX_LOGIT_SCALE)))

  def __call__(self, x_t, t):  # -> (image [B, E], s)
    return normalize(self.image_projection(self.image(x_t, t))), self.logit_scale()


def _with_article(phrase: str) -> str:
  return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def prompt(spec, label: int, adjective: str = "") -> str:
  """'a photo of a <adjective> <class>' in the words captions use ('a photo of an ankle boot',
  'a photo of a dark digit 7')."""
  noun = " ".join(captions.class_words(spec.class_names[label]))
  return "a photo of " + _with_article(f"{adjective} {noun}" if adjective else noun)


def prompt_tokens(spec, sentences) -> np.ndarray:
  """Sentences -> int32 [N, L]; a word outside the vocabulary is a GenfamError."""
  out = []
  for sentence in sentences:
    tokens, unknown = captions.tokenize(sentence, spec)
    if unknown:
      raise GenfamError(f"prompt {sentence!r} has words outside the caption vocabulary ({', '.join(unknown)}): "
                        f"add them to genfam/data/captions.py's VOCABULARY")
    out.append(tokens)
  return np.stack(out).astype(np.int32)


def contrastive_metrics(spec, encode_text, image, batch, class_prompts, attribute_prompts) -> dict:
  """The test metrics of image embeddings `image` [B, E] against the texts of `encode_text`
  (tokens [N, L] -> [N, E]): zero-shot class and attribute accuracy (prompts: class_prompts
  [C, L]; attribute_prompts, per attribute [n_a * C, L]) and caption/image recall@k within the
  batch's gallery; {name: [B]}, each with '<name>_chance'."""
  num_classes = spec.num_classes
  text = encode_text(batch["caption"])                                   # [B, E]
  out = {}
  classes = encode_text(jnp.asarray(class_prompts))                     # [C, E]
  out["zero_shot_class_accuracy"] = ((image @ classes.T).argmax(1) == batch["label"]).astype(jnp.float32)
  out["zero_shot_class_accuracy_chance"] = jnp.full(len(image), 1.0 / num_classes)
  for a, (name, values) in enumerate(zip(spec.attribute_names, spec.attribute_values)):
    per_class = encode_text(jnp.asarray(attribute_prompts[a])).reshape(len(values), num_classes, -1)
    options = normalize(per_class.mean(1))                              # [n_a, E]
    hit = (image @ options.T).argmax(1) == batch["attributes"][:, a]
    out[f"zero_shot_{name}_accuracy"] = hit.astype(jnp.float32)
    out[f"zero_shot_{name}_accuracy_chance"] = jnp.full(len(image), 1.0 / len(values))
  mask = batch["mask"]
  same = (batch["caption"][:, None, :] == batch["caption"][None, :, :]).all(-1)   # [B, B]
  similarity = text @ image.T                                            # [B text, B image]
  for k in RECALL_KS:
    for name, scores in (("caption_to_image", similarity), ("image_to_caption", similarity.T)):
      hit, chance = recall_at_k(scores, mask, same, k)
      out[f"{name}_recall_at_{k}"], out[f"{name}_recall_at_{k}_chance"] = hit, chance
  return out


def evaluation_prompts(spec):
  """The zero-shot prompts: classes int32 [C, L]; per attribute, its values x classes [n_a * C, L]."""
  classes = prompt_tokens(spec, [prompt(spec, c) for c in range(spec.num_classes)])
  attributes = [prompt_tokens(spec, [prompt(spec, c, v) for v in values for c in range(spec.num_classes)])
                for values in spec.attribute_values]
  return classes, attributes


def make(config, spec, encode_text=None) -> Family:
  """The CLIP family; the noise-conditional variant takes the loop's frozen text encoder
  `encode_text` (tokens [B, L] -> [B, E]) of model.text_encoder_workdir."""
  m = config.model
  if m.get("noise_conditional", False):
    return make_noisy(config, spec, encode_text)
  model = CLIP(vocab_size=spec.vocab_size, caption_length=spec.caption_length, num_bins=spec.num_bins,
               embed_dim=m.embed_dim, text_width=m.text_width, text_layers=m.text_layers,
               text_heads=m.text_heads, channels=tuple(m.channels), convs_per_stage=m.convs_per_stage,
               image_features=m.image_features, init_temperature=m.init_temperature)
  tx = optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  class_prompts, attribute_prompts = evaluation_prompts(spec)                  # [C, L]; each [n_a * C, L]

  def init(rng, batch):
    params = model.init(rng, batch["image"][:1], batch["caption"][:1])
    return scalar_loss_family_state(params, tx, ema_decay)

  def encode_text(params, tokens):
    """int32 [B, L] -> float32 [B, E], unit norm."""
    return model.apply(params, tokens, method=CLIP.encode_text)

  def encode_image(params, image):
    """uint8 [B, H, W, C] -> float32 [B, E], unit norm."""
    return model.apply(params, image, method=CLIP.encode_image)

  def agreement(params, image, tokens):
    """The image-text cosine t . v of each pair: [B] in [-1, 1] (the text-agreement score)."""
    return (encode_text(params, tokens) * encode_image(params, image)).sum(-1)

  def loss_fn(params, model_state, batch, rng):
    del rng
    text, image, scale = model.apply(params, batch["image"], batch["caption"])
    loss = info_nce(text, image, scale)
    similarity = text @ image.T                                           # [B, B]
    metrics = {"logit_scale": scale,
               "batch_caption_to_image_top1": (similarity.argmax(1) == jnp.arange(len(text))).mean()}
    return loss, (metrics, model_state)

  def test_metrics(params, batch, rng):
    """Per-example zero-shot accuracies and gallery recalls, each with '<name>_chance' ([B] each)."""
    del rng
    return contrastive_metrics(spec, lambda tokens: encode_text(params, tokens), encode_image(params, batch["image"]),
                               batch, class_prompts, attribute_prompts)

  return Family(name="clip", init=init, update=make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=eval_params, log_likelihood=None, likelihood_kind="", sample=None,
                test_metrics=test_metrics, headline_metric="zero_shot_class_accuracy",
                exports={"encode_text": encode_text, "encode_image": encode_image, "agreement": agreement,
                         "logit_scale": lambda params: model.apply(params, method=CLIP.logit_scale)})


def make_noisy(config, spec, encode_text) -> Family:
  """The noise-conditional image tower against the frozen text encoder (module docstring)."""
  m = config.model
  if encode_text is None:
    raise GenfamError("configs/clip.py:noisy trains its image tower against a frozen text encoder: set "
                      "--config.model.text_encoder_workdir=DIR (a configs/clip.py workdir on the same dataset) "
                      "and build the family as the loop does (genfam.loop.frozen.make_family)")
  frozen_text = lambda tokens: jax.lax.stop_gradient(encode_text(jnp.asarray(tokens, jnp.int32)))  # noqa: E731
  dim = int(jax.eval_shape(frozen_text, jax.ShapeDtypeStruct((1, spec.caption_length), jnp.int32)).shape[-1])
  model = NoisyImageTower(embed_dim=dim, channels=tuple(m.channels), convs_per_stage=m.convs_per_stage,
                          image_features=m.image_features, init_temperature=m.init_temperature,
                          dtype=m.get("dtype", "float32"))
  sched = noised.schedule_of(config.diffusion)
  tx = optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  class_prompts, attribute_prompts = evaluation_prompts(spec)

  def init(rng, batch):
    x = jnp.zeros((1, *batch["image"].shape[1:]), jnp.float32)
    return scalar_loss_family_state(model.init(rng, x, jnp.zeros((1,), jnp.int32)), tx, ema_decay)

  def loss_fn(params, model_state, batch, rng):
    image, scale = model.apply(params, *noised.noised(sched, batch["image"], spec.num_bins, rng))  # [B, E], s
    text = frozen_text(batch["caption"])                                                           # [B, E]
    loss = info_nce(text, image, scale)
    metrics = {"logit_scale": scale,
               "batch_caption_to_image_top1": ((text @ image.T).argmax(1) == jnp.arange(len(text))).mean()}
    return loss, (metrics, model_state)

  def test_metrics(params, batch, rng):
    """The clean model's metrics on noisy images at t ~ U{0..T-1}, and the zero-shot class accuracy
    per t-bucket ('zero_shot_class_accuracy_t<first>_<last>'); [B] each."""
    rng_uniform, rng_buckets = jax.random.split(rng)
    image, _ = model.apply(params, *noised.noised(sched, batch["image"], spec.num_bins, rng_uniform))
    out = contrastive_metrics(spec, frozen_text, image, batch, class_prompts, attribute_prompts)
    classes = frozen_text(class_prompts)                                                           # [C, E]
    for k in range(noised.NUM_BUCKETS):
      rng_t, rng_noise = jax.random.split(jax.random.fold_in(rng_buckets, k))
      t = noised.bucket_timesteps(rng_t, sched.num_steps, k, batch["label"].shape[0])
      image, _ = model.apply(params, *noised.noised(sched, batch["image"], spec.num_bins, rng_noise, t))
      out[f"zero_shot_class_accuracy_{noised.bucket_name(sched.num_steps, k)}"] = (
          (image @ classes.T).argmax(1) == batch["label"]).astype(jnp.float32)
    return out

  def encode_noisy_image(params, x_t, t):
    """float [B, H, W, C] on the diffusion's scale, int [B] -> float32 [B, E], unit norm."""
    return model.apply(params, x_t, t)[0]

  def guidance_objective(params, x_t, t, tokens):
    """s <v(x_t, t), e(tokens)>: [B, H, W, C], [B], int32 [B, L] -> [B] (its x_t-gradient guides)."""
    image, scale = model.apply(params, x_t, t)
    return scale * jnp.sum(image * frozen_text(tokens), axis=-1)

  return Family(name="clip", init=init, update=make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=eval_params, log_likelihood=None, likelihood_kind="", sample=None,
                test_metrics=test_metrics, headline_metric="zero_shot_class_accuracy",
                exports={"encode_noisy_image": encode_noisy_image,
                         "encode_text": lambda params, tokens: frozen_text(tokens),
                         "logit_scale": lambda params: model.apply(params, method=NoisyImageTower.logit_scale),
                         "guidance_objective": guidance_objective})
