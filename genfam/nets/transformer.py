"""A decoder-only transformer over discrete tokens with an optional prefix, and
its key-value-cached sampler (Flax Linen).

Sequence layout, S = P + D positions:
  0 .. P-1        prefix tokens (a label, or caption tokens) from their own
                  vocabulary, with their own position embeddings; a prefix
                  position may be masked out (caption padding): no position
                  attends to it, so its content never matters
  P               the learned start embedding (not a token id: every one of
                  the K token values, grey level 0 included, keeps its meaning)
  P+1 .. P+D-1    the tokens x_0 .. x_{D-2}
The output at position P + i is the categorical p(x_i | x_<i, prefix) over K
values: `Transformer.__call__` returns its logits [B, D, K]. Prefix tokens are
conditioning only; they are never predicted.

Blocks are pre-LayerNorm (x + attn(ln(x)), x + mlp(ln(x))), attention is
causal through `jax.nn.dot_product_attention` (XLA here; fused kernels where a
backend has them), q/k/v projections without biases, a final LayerNorm and a
K-way head (zero-initialised by default, so an untrained model is uniform:
log2(K) bits per token). `query_block` > 0 computes the causal attention in
blocks of query rows that skip the keys above the diagonal blocks (the same
result, fewer FLOPs: worth it on a CPU); 0 is one call over the whole sequence.
Residual stream, LayerNorms and logits are float32; `dtype` (float32 or
bfloat16) is the dtype of the matmuls, attention and the key-value cache; in bfloat16 on
a CPU with bf16 matrix instructions the dense layers' kernel gradients take the form XLA
runs on AMX (`cpu.dense_products`).
Dropout (rate `dropout`, rng stream 'dropout', train=True only) acts on the
embeddings and on each residual branch.

Sampling (`sample_tokens`): the cached sampler fills the prefix's keys and
values in one pass (`prefill`), then runs one `lax.scan` over the D positions,
one token per step, each step attending to the per-layer cache [B, S, H, Dh];
the uncached reference recomputes the full forward pass at every step.
Both draw token i with the key fold_in(rng, i), so from equal logits they
give equal samples.

Modules take plain arguments, never configs.
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam.cpu import dense_products

SAMPLERS = ("cached", "uncached")
Cache = list  # [(k, v)] per layer, each [B, S, H, Dh] in the compute dtype


def attention_mask(prefix_mask: Optional[jax.Array], seq_len: int) -> Optional[jax.Array]:
  """None (plain causal) or bool [B, 1, S, S]: query q may attend key k iff k <= q and
  key k is valid; a query always sees itself, so a masked prefix position has a
  defined output (which no valid position reads).  prefix_mask: bool [B, P] or None."""
  if prefix_mask is None:
    return None
  batch, prefix_len = prefix_mask.shape
  valid = jnp.concatenate([prefix_mask, jnp.ones((batch, seq_len - prefix_len), bool)], axis=1)  # [B, S]
  causal = jnp.tril(jnp.ones((seq_len, seq_len), bool))
  eye = jnp.eye(seq_len, dtype=bool)
  return causal[None, None] & (valid[:, None, None, :] | eye[None, None])


def causal_attention(q, k, v, mask=None, query_block: int = 0):
  """Causal softmax(q k^T / sqrt(Dh)) v.

  q, k, v [B, T, H, Dh]; mask None (plain causal) or bool [B, 1, T, T] (already
  causal) -> [B, T, H, Dh]. query_block = 0: one call of
  `jax.nn.dot_product_attention` for all rows (a fused kernel where a backend has
  one). query_block > 0: `blocked_causal_attention`, the same result up to float
  rounding with the keys above the diagonal blocks never computed.
  """
  seq = q.shape[1]
  if not query_block or query_block >= seq:
    if mask is None:
      return jax.nn.dot_product_attention(q, k, v, is_causal=True)
    return jax.nn.dot_product_attention(q, k, v, mask=mask)
  return blocked_causal_attention(q, k, v, mask, query_block)


def logits_product(q, k):  # q [B, H, M, Dh], k [B, H, N, Dh] -> q k^T [B, H, M, N], float32 accumulation
  return jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.promote_types(q.dtype, jnp.float32))


def mix_product(p, v):  # p [B, H, M, N], v [B, H, N, Dh] -> p v [B, H, M, Dh] in v's dtype
  return jnp.einsum("bhqk,bhkd->bhqd", p, v)


def blocked_causal_attention(q, k, v, mask, query_block: int, products=(logits_product, mix_product)):
  """Causal attention in blocks of `query_block` query rows: the block of rows a..b-1
  attends to keys 0..b-1 only (about half the products of one call at many blocks).

  q, k, v [B, T, H, Dh]; mask None (causal) or bool [B, 1, T, T] -> [B, T, H, Dh] in v's
  dtype. The arithmetic is `jax.nn.dot_product_attention`'s XLA path: logits
  q . k / sqrt(Dh) accumulated in float32 (float64 stays float64), masked entries set to
  -0.7 x float32's max, softmax in that dtype, probabilities cast to k's dtype, then
  p @ v. It runs heads-major ([B, H, T, Dh], one transpose in and one out): each
  block's keys are then a contiguous prefix of every (b, h) row, and the gradient of
  that slice a cheap pad. Slicing [B, T, H, Dh] instead (one dot_product_attention
  call per block) made XLA:CPU sum the blocks' key and value gradients in strided,
  transposing fusions: the three largest operations of the image-GPT's step at depth 4
  (166-181 ms each of a 1974 ms step; `python -m experiments.probes.profile_step
  --configs=igpt@model.depth=4`, query_block=56). Heads-major, the step runs 1.23-1.31x
  faster at that block size, and layout copies are 15% of its operation time at
  query_block=196 (the config's default) where they were 39%. `products` are the two batched
  products (`logits_product`, `mix_product` or another form of the same maths).
  """
  seq, head_dim = q.shape[1], q.shape[-1]
  acc = jnp.promote_types(q.dtype, jnp.float32)
  scale = jnp.asarray(head_dim ** -0.5, acc)
  qh, kh, vh = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))                       # [B, H, T, Dh]
  rows = jnp.arange(seq)
  out = []
  for a in range(0, seq, query_block):
    b = min(a + query_block, seq)
    logits = products[0](qh[:, :, a:b], kh[:, :, :b]) * scale
    allowed = rows[a:b, None] >= rows[None, :b] if mask is None else mask[:, :, a:b, :b]   # [.., b - a, b]
    logits = jnp.where(allowed, logits, jnp.asarray(-0.7 * jnp.finfo(jnp.float32).max, acc))
    probs = jax.nn.softmax(logits, axis=-1).astype(k.dtype)
    out.append(products[1](probs, vh[:, :, :b]))                                  # [B, H, b - a, Dh]
  return jnp.swapaxes(jnp.concatenate(out, axis=2), 1, 2)


class SelfAttention(nn.Module):
  """Multi-head self-attention; `decode` is the same layer for one position with a cache."""
  width: int
  num_heads: int
  dtype: Any = jnp.float32
  query_block: int = 0

  def setup(self):
    head_dim = self.width // self.num_heads
    # No biases on q, k, v: a key bias has zero gradient (it adds q . b to every logit of a
    # query), so it would only drift with rounding noise; a value bias passes through the
    # softmax average unchanged and is the output projection's bias.
    dot = dense_products.for_dtype(self.dtype)
    self.qkv = nn.DenseGeneral((3, self.num_heads, head_dim), use_bias=False, dtype=self.dtype, dot_general=dot,
                               name="qkv")
    self.out = nn.DenseGeneral(self.width, axis=(-2, -1), dtype=self.dtype, dot_general=dot, name="out")

  def __call__(self, x, mask):
    # x [B, T, W]; mask None (causal) or bool [B, 1, T, T] -> y [B, T, W], (k, v) each [B, T, H, Dh]
    q, k, v = (self.qkv(x)[:, :, j] for j in range(3))
    return self.out(causal_attention(q, k, v, mask, self.query_block)), (k, v)

  def decode(self, x, kv, pos, key_valid):
    # x [B, 1, W] at position pos; kv: cache (k, v) [B, S, H, Dh]; key_valid bool [B, S]
    q, k, v = (self.qkv(x)[:, :, j] for j in range(3))
    cache_k = jax.lax.dynamic_update_slice_in_dim(kv[0], k.astype(kv[0].dtype), pos, axis=1)
    cache_v = jax.lax.dynamic_update_slice_in_dim(kv[1], v.astype(kv[1].dtype), pos, axis=1)
    seen = key_valid & (jnp.arange(cache_k.shape[1]) <= pos)[None]              # [B, S]
    y = jax.nn.dot_product_attention(q, cache_k, cache_v, mask=seen[:, None, None, :])
    return self.out(y), (cache_k, cache_v)


class Block(nn.Module):
  """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""
  width: int
  num_heads: int
  mlp_ratio: int = 4
  dropout: float = 0.0
  dtype: Any = jnp.float32
  query_block: int = 0

  def setup(self):
    self.ln1, self.ln2 = nn.LayerNorm(name="ln1"), nn.LayerNorm(name="ln2")
    self.attn = SelfAttention(self.width, self.num_heads, self.dtype, self.query_block, name="attn")
    dot = dense_products.for_dtype(self.dtype)
    self.fc1 = nn.Dense(self.mlp_ratio * self.width, dtype=self.dtype, dot_general=dot, name="fc1")
    self.fc2 = nn.Dense(self.width, dtype=self.dtype, dot_general=dot, name="fc2")
    self.drop = nn.Dropout(self.dropout)

  def _mlp(self, x):
    return self.fc2(nn.gelu(self.fc1(x))).astype(jnp.float32)

  def __call__(self, x, mask, train: bool = False):  # [B, T, W] float32 -> [B, T, W], (k, v)
    h, kv = self.attn(self.ln1(x), mask)
    x = x + self.drop(h.astype(jnp.float32), deterministic=not train)
    return x + self.drop(self._mlp(self.ln2(x)), deterministic=not train), kv

  def decode(self, x, kv, pos, key_valid):  # [B, 1, W] -> [B, 1, W], new (k, v)
    h, kv = self.attn.decode(self.ln1(x), kv, pos, key_valid)
    x = x + h.astype(jnp.float32)
    return x + self._mlp(self.ln2(x)), kv


class Transformer(nn.Module):
  """p(x_i | x_<i, prefix) for token sequences x in {0..num_tokens-1}^seq_len.

  num_tokens:   K, values of a token (grey levels).
  seq_len:      D, tokens per sequence (pixels).
  prefix_vocab: size of the prefix vocabulary (classes, caption words); 0 = no prefix.
  prefix_len:   P, prefix tokens in front.
  """
  num_tokens: int
  seq_len: int
  prefix_vocab: int = 0
  prefix_len: int = 0
  width: int = 128
  depth: int = 4
  num_heads: int = 4
  mlp_ratio: int = 4
  dropout: float = 0.0
  dtype: Any = jnp.float32
  zero_head: bool = True
  query_block: int = 0

  def setup(self):
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} does not divide into {self.num_heads} heads")
    init = nn.initializers.normal(0.02)
    self.token_embed = nn.Embed(self.num_tokens, self.width, embedding_init=init, name="token_embed")
    self.start = self.param("start", init, (self.width,))
    self.pos_embed = self.param("pos_embed", init, (self.seq_len, self.width))
    if self.prefix_len:
      self.prefix_embed = nn.Embed(self.prefix_vocab, self.width, embedding_init=init, name="prefix_embed")
      self.prefix_pos_embed = self.param("prefix_pos_embed", init, (self.prefix_len, self.width))
    self.blocks = [Block(self.width, self.num_heads, self.mlp_ratio, self.dropout, self.dtype,
                         self.query_block, name=f"block_{i}")
                   for i in range(self.depth)]
    self.ln_f = nn.LayerNorm(name="ln_f")
    self.head = nn.Dense(self.num_tokens, dtype=self.dtype, dot_general=dense_products.for_dtype(self.dtype),
                         name="head",
                         kernel_init=nn.initializers.zeros if self.zero_head else nn.linear.default_kernel_init)
    self.drop = nn.Dropout(self.dropout)

  def _prefix(self, prefix):  # [B, P] int -> [B, P, W]
    return self.prefix_embed(prefix) + self.prefix_pos_embed[None]

  def _logits(self, x):  # [..., W] -> [..., K] float32
    return self.head(self.ln_f(x)).astype(jnp.float32)

  def __call__(self, tokens, prefix=None, prefix_mask=None, train: bool = False):
    """tokens int [B, D]; prefix int [B, P] (or None when P = 0); prefix_mask bool [B, P]
    (None: all valid) -> logits [B, D, K] float32, row i those of p(x_i | x_<i, prefix)."""
    batch = tokens.shape[0]
    start = jnp.broadcast_to(self.start, (batch, 1, self.width))
    x = jnp.concatenate([start, self.token_embed(tokens[:, :-1])], axis=1) + self.pos_embed[None]  # [B, D, W]
    if self.prefix_len:
      x = jnp.concatenate([self._prefix(prefix), x], axis=1)                          # [B, S, W]
    x = self.drop(x, deterministic=not train)
    mask = attention_mask(prefix_mask if self.prefix_len else None, x.shape[1])
    for block in self.blocks:
      x, _ = block(x, mask, train)
    return self._logits(x[:, self.prefix_len:])

  def prefill(self, batch: int, prefix=None, prefix_mask=None) -> Cache:
    """The key-value cache [(k, v)] per layer, each [batch, S, H, Dh], holding the prefix's
    keys and values at positions 0..P-1 (zeros elsewhere)."""
    seq, head_dim = self.prefix_len + self.seq_len, self.width // self.num_heads
    zeros = jnp.zeros((batch, seq, self.num_heads, head_dim), self.dtype)
    if not self.prefix_len:
      return [(zeros, zeros) for _ in self.blocks]
    x = self._prefix(prefix)
    mask = attention_mask(prefix_mask, self.prefix_len)
    cache = []
    for block in self.blocks:
      x, (k, v) = block(x, mask)
      cache.append(tuple(jax.lax.dynamic_update_slice_in_dim(zeros, a.astype(self.dtype), 0, axis=1)
                         for a in (k, v)))
    return cache

  def decode(self, previous, i, cache: Cache, key_valid):
    """One step: previous int [B] (x_{i-1}, ignored at i = 0, where the start embedding
    stands), i scalar int, key_valid bool [B, S] -> (logits [B, K] float32 of x_i, cache)."""
    embed = jnp.where(i == 0, self.start[None], self.token_embed(previous))       # [B, W]
    x = (embed + self.pos_embed[i][None])[:, None]                                  # [B, 1, W]
    new = []
    for block, kv in zip(self.blocks, cache):
      x, kv = block.decode(x, kv, self.prefix_len + i, key_valid)
      new.append(kv)
    return self._logits(x[:, 0]), new


def draw(rng, logits, temperature: float = 1.0, top_k: int = 0):
  """Samples int32 [B] from logits [B, K] / temperature, restricted to the top_k
  largest (0: all K; ties at the k-th value are kept)."""
  logits = logits / temperature
  if top_k and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.random.categorical(rng, logits).astype(jnp.int32)


def sample_tokens(model: Transformer, params, rng, num: int, prefix=None, prefix_mask=None, *,
                  temperature: float = 1.0, top_k: int = 0, sampler: str = "cached"):
  """int32 [num, D] tokens from the model; token i drawn with key fold_in(rng, i).

  prefix int [num, P] (None when P = 0); prefix_mask bool [num, P] (None: all valid).
  'cached': prefill + one lax.scan over the D positions with the key-value cache.
  'uncached': one lax.fori_loop over the D positions, each a full forward pass.
  """
  variables = {"params": params}
  if sampler == "cached":
    cache = model.apply(variables, num, prefix, prefix_mask, method=Transformer.prefill)
    pm = jnp.ones((num, model.prefix_len), bool) if prefix_mask is None else prefix_mask
    key_valid = jnp.concatenate([pm, jnp.ones((num, model.seq_len), bool)], axis=1)    # [num, S]

    def step(carry, i):
      cache, previous = carry
      logits, cache = model.apply(variables, previous, i, cache, key_valid, method=Transformer.decode)
      token = draw(jax.random.fold_in(rng, i), logits, temperature, top_k)
      return (cache, token), token

    _, tokens = jax.lax.scan(step, (cache, jnp.zeros((num,), jnp.int32)), jnp.arange(model.seq_len))
    return tokens.T
  if sampler == "uncached":

    def body(i, tokens):
      logits = model.apply(variables, tokens, prefix, prefix_mask)                    # [num, D, K]
      logits_i = jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False)
      return tokens.at[:, i].set(draw(jax.random.fold_in(rng, i), logits_i, temperature, top_k))

    return jax.lax.fori_loop(0, model.seq_len, body, jnp.zeros((num, model.seq_len), jnp.int32))
  raise ValueError(f"unknown sampler {sampler!r}; use one of {SAMPLERS}")
