"""The autoregressive image-GPT family: a decoder-only transformer over pixels.

An image x in {0..K-1}^(H x W x C) is the token sequence x_0 .. x_{D-1} in
raster order, channels interleaved per pixel (D = H * W * C; K = 256 grey
levels, 17 for digits). The model (`genfam.nets.transformer.Transformer`) is
  p(x | prefix) = prod_i Cat(x_i; softmax(logits_i(x_<i, prefix))),
with a learned start embedding in front of x_0 (not a grey level) and an
optional prefix in front of that:
  model.condition = 'none'     no prefix: p(x)
                    'label'    one label token: p(x | y)
                    'caption'  the caption tokens batch['caption'] int32 [B, L]
                               (token 0 = padding, masked out of attention): p(x | caption)
`model.class_conditional=True` is the short form of condition='label'
(condition 'none' + class_conditional gives 'label'; 'caption' with
class_conditional is refused).

Likelihood (kind 'exact', no dequantization: the model is discrete):
  bpd = -sum_{i<D} log p(x_i | x_<i, prefix) / (D log 2)
per example, with D the stored pixels only (prefix tokens are never counted).
Conditional models report -log p(x | label) or -log p(x | caption), labelled
by `likelihood_condition`. Training minimises the same bits/dim.

Sampling: the key-value-cached sampler (default) or the uncached reference
(sample.sampler), temperature and top-k (0 = off) from config.sample.
`sample(params, rng, num, condition)`: condition is int32 labels [num] for a
label model, int32 caption tokens [num, L] for a caption model, or None:
a label model then draws its labels uniformly (samples of the mixture
sum_y p(x | y) / C); a caption model samples with the empty caption (all
padding), which it learns as the unconditional model when
model.caption_dropout > 0 (each training caption is emptied with that
probability, as in classifier-free guidance). An unconditional model ignores
`condition`.
"""
import jax
import jax.numpy as jnp

from genfam import optim
from genfam.errors import GenfamError
from genfam.family import Family
from genfam.likelihood import bits
from genfam.nets.transformer import SAMPLERS, Transformer, sample_tokens

CONDITIONS = ("none", "label", "caption")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def condition_of(model_config) -> str:
  """'none', 'label' or 'caption' from model.condition and model.class_conditional."""
  m = model_config
  condition = m.get("condition", "none")
  if condition not in CONDITIONS:
    raise GenfamError(f"unknown model.condition {condition!r}; use one of {CONDITIONS}")
  if m.get("class_conditional", False):
    if condition == "caption":
      raise GenfamError("model.class_conditional=True asks for a label prefix but model.condition='caption'; "
                        "set --config.model.class_conditional=False for a caption prefix")
    return "label"
  return condition


def make_model(config, spec, num_tokens: int = 0, seq_len: int = 0) -> Transformer:
  """The Transformer of config.model for dataset `spec`; checks the prefix and dtype. Its tokens are
  the pixels (K grey levels, D positions) unless `num_tokens` and `seq_len` say otherwise (the code
  prior of genfam.families.two_stage.code_prior: N codes, h * w positions)."""
  m = config.model
  condition = condition_of(m)
  if condition == "label":
    prefix_vocab, prefix_len = spec.num_classes, 1
  elif condition == "caption":
    prefix_vocab, prefix_len = getattr(spec, "vocab_size", 0), getattr(spec, "caption_length", 0)
    if not prefix_vocab or not prefix_len:
      raise GenfamError(f"dataset {spec.name!r} carries no captions (its spec has no vocab_size / "
                        "caption_length); use --config.model.condition=none or label")
  else:
    prefix_vocab, prefix_len = 0, 0
  if m.dtype not in DTYPES:
    raise GenfamError(f"unknown model.dtype {m.dtype!r}; use one of {tuple(DTYPES)}")
  if m.width % m.num_heads:
    raise GenfamError(f"model.width={m.width} does not divide into model.num_heads={m.num_heads} heads; "
                      "pick a width that is a multiple of num_heads")
  return Transformer(num_tokens=num_tokens or spec.num_bins, seq_len=seq_len or spec.num_dims,
                     prefix_vocab=prefix_vocab,
                     prefix_len=prefix_len, width=m.width, depth=m.depth, num_heads=m.num_heads,
                     mlp_ratio=m.mlp_ratio, dropout=m.dropout, dtype=DTYPES[m.dtype],
                     query_block=m.get("query_block", 0))


def sampling_options(sample_config, num_tokens: int) -> tuple[float, int, str]:
  """(temperature, top_k, sampler) of config.sample, checked for a model over `num_tokens` values."""
  s = sample_config
  temperature, top_k, sampler = float(s.temperature), int(s.top_k), s.sampler
  if sampler not in SAMPLERS:
    raise GenfamError(f"unknown sample.sampler {sampler!r}; use one of {SAMPLERS}")
  if not temperature > 0:
    raise GenfamError(f"sample.temperature={temperature} must be > 0; 1 samples the model as trained")
  if not 0 <= top_k <= num_tokens:
    raise GenfamError(f"sample.top_k={top_k} is outside [0, {num_tokens}]; 0 turns top-k off")
  return temperature, top_k, sampler


def prefix_of(prefix_kind: str, batch):
  """-> (prefix int32 [B, P] or None, prefix_mask bool [B, P] or None) of a batch."""
  if prefix_kind == "label":
    return batch["label"].astype(jnp.int32)[:, None], None
  if prefix_kind == "caption":
    if "caption" not in batch:
      raise GenfamError("model.condition='caption' but the batches carry no 'caption' tokens; "
                        "use a dataset with captions or --config.model.condition=none")
    caption = batch["caption"].astype(jnp.int32)
    return caption, caption != 0
  return None, None


def training_prefix(prefix_kind: str, batch, caption_dropout: float, rng):
  """`prefix_of`, each caption emptied with probability caption_dropout (the empty caption
  then learns the unconditional model, as in classifier-free guidance)."""
  prefix, prefix_mask = prefix_of(prefix_kind, batch)
  if prefix_kind == "caption" and caption_dropout > 0:
    keep = jax.random.bernoulli(rng, 1.0 - caption_dropout, (prefix.shape[0], 1))
    prefix = jnp.where(keep, prefix, 0)
    prefix_mask = prefix != 0
  return prefix, prefix_mask


def token_nll(model: Transformer, params, tokens, prefix, prefix_mask, train=False, rng=None):
  """[B] nats: -sum_i log p(t_i | t_<i, prefix) of int32 tokens [B, S]."""
  logits = model.apply({"params": params}, tokens, prefix, prefix_mask, train,
                       rngs={"dropout": rng} if train else None)                # [B, S, K]
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(log_p, tokens[..., None], axis=-1)[..., 0].sum(axis=1)


def checked_condition(prefix_kind: str, prefix_len: int, num: int, condition, what: str = "image-GPT"):
  """The sampling condition as given (labels [num] or caption tokens [num, P]), or None for an
  unconditional model or condition=None; a condition of the wrong shape is refused."""
  if condition is None or prefix_kind == "none":
    return None
  value = jnp.asarray(condition)
  want = (int(num),) if prefix_kind == "label" else (int(num), prefix_len)
  if value.shape != want:
    raise GenfamError(f"{what} conditioned on {prefix_kind} samples from a condition of "
                      f"shape {want}, got {tuple(value.shape)}; pass "
                      f"{'labels' if len(want) == 1 else 'caption tokens'} of that shape")
  return condition


def sampling_prefix(prefix_kind: str, num_classes: int, prefix_len: int, rng, num: int, condition_value):
  """(prefix, prefix_mask) to sample from: the given labels / caption tokens, or with None uniform
  random labels (a label model) or the empty caption (a caption model)."""
  if prefix_kind == "label":
    prefix = (jax.random.randint(rng, (num,), 0, num_classes) if condition_value is None
              else jnp.asarray(condition_value, jnp.int32))[:, None]
    return prefix, None
  if prefix_kind == "caption":
    prefix = (jnp.zeros((num, prefix_len), jnp.int32) if condition_value is None
              else jnp.asarray(condition_value, jnp.int32))
    return prefix, prefix != 0
  return None, None


def make(config, spec) -> Family:
  """The image-GPT Family for dataset `spec` (genfam.data.spec.DatasetSpec)."""
  model = make_model(config, spec)
  prefix_kind = condition_of(config.model)
  caption_dropout = float(config.model.get("caption_dropout", 0.0))
  temperature, top_k, sampler = sampling_options(config.sample, spec.num_bins)
  tx = optim.optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  shape, num_dims = tuple(spec.image_shape), spec.num_dims

  def tokens_of(batch):  # image uint8 [B, H, W, C] -> int32 [B, D], raster order, channels interleaved
    if tuple(batch["image"].shape[1:]) != shape:
      raise GenfamError(f"image-GPT built for images {shape}, got {tuple(batch['image'].shape[1:])}; "
                        "use the dataset the config names")
    return batch["image"].reshape(batch["image"].shape[0], -1).astype(jnp.int32)

  def init(rng, batch):
    tokens = tokens_of(batch)[:1]
    prefix, prefix_mask = prefix_of(prefix_kind, {k: v[:1] for k, v in batch.items()})
    params = jax.jit(lambda r: model.init({"params": r}, tokens, prefix, prefix_mask))(rng)["params"]
    return optim.scalar_loss_family_state(params, tx, ema_decay)

  def log_likelihood(params, batch, rng):
    """[B] bits/dim: -sum_i log p(x_i | x_<i, prefix) / (D log 2)."""
    del rng
    prefix, prefix_mask = prefix_of(prefix_kind, batch)
    return {"bpd": bits.nats_to_bpd(token_nll(model, params, tokens_of(batch), prefix, prefix_mask), num_dims)}

  def loss_fn(params, model_state, batch, rng):
    rng_drop, rng_caption = jax.random.split(rng)
    prefix, prefix_mask = training_prefix(prefix_kind, batch, caption_dropout, rng_caption)
    nats = token_nll(model, params, tokens_of(batch), prefix, prefix_mask, train=True, rng=rng_drop)
    bpd = bits.nats_to_bpd(nats, num_dims).mean()
    return bpd, ({"bpd": bpd}, model_state)

  def _draw(params, rng, num, condition_value):
    rng_label, rng_tokens = jax.random.split(rng)
    prefix, prefix_mask = sampling_prefix(prefix_kind, spec.num_classes, model.prefix_len, rng_label, num,
                                          condition_value)
    tokens = sample_tokens(model, params, rng_tokens, num, prefix, prefix_mask,
                           temperature=temperature, top_k=top_k, sampler=sampler)
    return tokens.reshape((num,) + shape).astype(jnp.uint8)

  draw_jit = jax.jit(_draw, static_argnums=2)

  def sample(params, rng, num, condition=None):
    """uint8 [num, H, W, C] in {0 .. K-1}; condition: labels [num], captions [num, L] or None."""
    return draw_jit(params, rng, int(num), checked_condition(prefix_kind, model.prefix_len, num, condition))

  return Family(name="igpt", init=init, update=optim.make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=optim.eval_params, log_likelihood=log_likelihood, likelihood_kind="exact",
                sample=sample, likelihood_condition="" if prefix_kind == "none" else prefix_kind)
