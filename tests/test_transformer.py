"""The decoder-only transformer: causality, the key-value cache, prefix masking, samplers.

Tiny models (K = 7 token values, D = 12 positions, width 16) with a random
(not zero) head, so every logit depends on the context.
"""
import functools

import chex
import jax
import jax.test_util
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.nets.transformer import Transformer, causal_attention, draw, sample_tokens

K, D, B = 7, 12, 3


def _model(prefix_len=0, prefix_vocab=0, query_block=0, dropout=0.0):
  return Transformer(num_tokens=K, seq_len=D, prefix_vocab=prefix_vocab, prefix_len=prefix_len, width=16,
                     depth=2, num_heads=2, mlp_ratio=2, dropout=dropout, zero_head=False, query_block=query_block)


@functools.lru_cache(maxsize=None)
def _initial_params(seed):
  """Params of the widest model of the cases (a 4-token prefix over 9 words), initialised once
  per seed (one init program for every case: the others take slices of it, `_params`)."""
  model = _model(prefix_len=4, prefix_vocab=9)
  tokens, prefix = jnp.zeros((1, D), jnp.int32), jnp.ones((1, 4), jnp.int32)
  params = jax.jit(model.init)(jax.random.split(jax.random.PRNGKey(seed), 3)[2], tokens, prefix)["params"]
  return jax.tree.map(np.asarray, params)


def _params(seed, prefix_len=0, prefix_vocab=0):
  """Random params (a random head) of _model(prefix_len, prefix_vocab, ...) for `seed`."""
  params = dict(_initial_params(seed))
  del params["prefix_embed"], params["prefix_pos_embed"]
  if prefix_len:
    params["prefix_embed"] = {"embedding": _initial_params(seed)["prefix_embed"]["embedding"][:prefix_vocab]}
    params["prefix_pos_embed"] = _initial_params(seed)["prefix_pos_embed"][:prefix_len]
  return jax.tree.map(jnp.asarray, params)


def _setup(seed, prefix_len=0, prefix_vocab=0, query_block=0, padded=False):
  """(model, params, tokens [B, D], prefix [B, P] or None, prefix_mask [B, P] or None)."""
  model = _model(prefix_len, prefix_vocab, query_block)
  k_tok, k_pre, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
  tokens = jax.random.randint(k_tok, (B, D), 0, K)
  prefix = jax.random.randint(k_pre, (B, prefix_len), 1, prefix_vocab) if prefix_len else None
  mask = None
  if padded:  # example b keeps its first P - b tokens, the rest is padding (token 0)
    keep = jnp.arange(prefix_len)[None] < (prefix_len - jnp.arange(B))[:, None]
    prefix, mask = jnp.where(keep, prefix, 0), keep
  return model, _params(seed, prefix_len, prefix_vocab), tokens, prefix, mask


CASES = {"plain": {}, "label": dict(prefix_len=1, prefix_vocab=5),
         "caption": dict(prefix_len=4, prefix_vocab=9, padded=True),
         "caption_blocked": dict(prefix_len=4, prefix_vocab=9, padded=True, query_block=5)}


class CausalityTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_logits_at_i_see_only_tokens_before_i(self):
    """Per case and seed, one network call on the base tokens and their four probes stacked in
    one batch [5B, D] (the probes in numpy: no eager op per probe)."""
    for case, kwargs in CASES.items():
      model = _model(kwargs.get("prefix_len", 0), kwargs.get("prefix_vocab", 0), kwargs.get("query_block", 0))
      apply = self.variant(lambda p, t, c, m: model.apply({"params": p}, t, c, m))  # noqa: B023
      for seed in range(3):
        _, params, tokens, prefix, mask = _setup(seed, **kwargs)
        tokens = np.asarray(tokens)
        rng = np.random.default_rng(seed)
        i = int(rng.integers(1, D))
        probes = []
        for j in (i, int(rng.integers(i, D)), D - 1):      # a token at or after i changes
          changed = tokens.copy()
          changed[:, j] = (tokens[:, j] + 1 + int(rng.integers(K - 1))) % K
          probes.append((j, changed))
        j = int(rng.integers(0, i))                          # a token before i changes
        changed = tokens.copy()
        changed[:, j] = (tokens[:, j] + 1) % K
        probes.append((j, changed))
        tile = lambda a: None if a is None else np.tile(np.asarray(a), (1 + len(probes), 1))  # noqa: E731
        logits = np.asarray(apply(params, np.concatenate([tokens] + [c for _, c in probes]), tile(prefix),
                                  tile(mask))).reshape(1 + len(probes), B, D, K)
        base = logits[0]
        for (j, _), changed_logits in zip(probes[:3], logits[1:4]):
          np.testing.assert_allclose(changed_logits[:, :i + 1], base[:, :i + 1], rtol=0, atol=1e-6,
                                     err_msg=f"{case} seed {seed}: position <= {i} saw token {j}")
        assert np.abs(logits[4][:, i] - base[:, i]).max() > 1e-4, (case, seed, i, probes[3][0])


def _brute_force_attention(q, k, v, mask):
  """softmax(q k^T / sqrt(Dh), masked) v in numpy float64, one (b, h) at a time: [B, T, H, Dh]."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  batch, seq, heads, dh = q.shape
  allowed = np.tril(np.ones((seq, seq), bool)) if mask is None else np.asarray(mask)[:, 0]
  out = np.zeros_like(q)
  for b in range(batch):
    for h in range(heads):
      logits = q[b, :, h] @ k[b, :, h].T / np.sqrt(dh)
      logits = np.where(allowed if mask is None else allowed[b], logits, -np.inf)
      p = np.exp(logits - logits.max(-1, keepdims=True))
      out[b, :, h] = (p / p.sum(-1, keepdims=True)) @ v[b, :, h]
  return out


def _prefix_mask(batch, seq, prefix_len=3):
  """A caption-style mask [B, 1, T, T]: example b hides its last b prefix positions."""
  valid = np.ones((batch, seq), bool)
  for b in range(batch):
    valid[b, prefix_len - b:prefix_len] = False
  causal = np.tril(np.ones((seq, seq), bool))
  return jnp.asarray(causal[None, None] & (valid[:, None, None, :] | np.eye(seq, dtype=bool)[None, None]))


def _gradient_case():
  """(q, k, v, cotangent g) [2, 5, 2, 3] float64 (under enable_x64) and a caption-style mask."""
  q, k, v, g = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 5, 2, 3), jnp.float64)
  return q, k, v, g, _prefix_mask(2, 5)


def _plain_attention(mask):
  """softmax(q k^T / sqrt(3), masked) v in plain jnp ops (head size 3)."""

  def plain(q, k, v):
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(3.0)
    p = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v)

  return plain


class QueryBlockTest(chex.TestCase):
  """Blocked causal attention (query_block > 0) against brute force in float64 (values and
  gradients), against one dot_product_attention call in float32, and in bfloat16."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_blocks_equal_brute_force_in_float64(self):
    with jax.enable_x64(True):
      # T = 7: block 1, blocks that do not divide T (3, 4) and one of T - 1 (6)
      q, k, v = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 7, 2, 4), jnp.float64)
      for mask in (None, _prefix_mask(3, 7)):
        expected = _brute_force_attention(q, k, v, mask)
        for block in (1, 3, 4, 6):
          attend = self.variant(lambda q, k, v, m=mask, b=block: causal_attention(q, k, v, m, b))
          out = attend(q, k, v)
          assert out.dtype == jnp.float64
          np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12, err_msg=f"block {block}")

  @chex.variants(with_jit=True, without_jit=True)
  def test_block_gradients_in_float64(self):
    """Gradients of every block size equal those of a plain jnp softmax attention."""
    with jax.enable_x64(True):
      q, k, v, g, mask = _gradient_case()
      plain = _plain_attention(mask)

      def grads(fn):
        return self.variant(jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) * g), argnums=(0, 1, 2)))(q, k, v)

      want = grads(plain)
      for block in (1, 2, 4):                              # T = 5: 2 and 4 do not divide it
        blocked = lambda q, k, v, b=block: causal_attention(q, k, v, mask, b)  # noqa: E731
        for got, expected, name in zip(grads(blocked), want, "qkv"):
          np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=f"d{name}, block {block}")

  def test_block_gradients_match_finite_differences_in_float64(self):
    """jax.test_util.check_grads of every block size, jitted: one program per block size (it ran
    outside the chex variant, the same check twice, when it was part of the test above)."""
    with jax.enable_x64(True):
      q, k, v, _, mask = _gradient_case()
      for block in (1, 2, 4):
        blocked = lambda q, k, v, b=block: causal_attention(q, k, v, mask, b)  # noqa: E731
        jax.test_util.check_grads(jax.jit(blocked), (q, k, v), order=1, modes=("rev",), eps=1e-6)

  def test_blocks_match_one_dot_product_attention_call_in_float32(self):
    q, k, v = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 7, 2, 4))    # T = 7: block 4 does not divide it
    attend = jax.jit(causal_attention, static_argnums=4)
    for mask in (None, _prefix_mask(2, 7)):
      full = attend(q, k, v, mask, 0)
      for block in (1, 4, 20):
        np.testing.assert_allclose(attend(q, k, v, mask, block), full, rtol=1e-5, atol=1e-6)

  def test_bfloat16_blocks_stay_bfloat16_and_near_float32(self):
    q, k, v = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 10, 2, 8))   # T = 10 in blocks of 4
    attend = jax.jit(causal_attention, static_argnums=(3, 4))
    low = attend(*(a.astype(jnp.bfloat16) for a in (q, k, v)), None, 4)
    assert low.dtype == jnp.bfloat16
    np.testing.assert_allclose(low.astype(jnp.float32), attend(q, k, v, None, 0), atol=0.05)


def _cached_logits(model, params, tokens, prefix, mask):
  """Logits [B, D, K] of the cached path, teacher-forced with `tokens`."""
  variables = {"params": params}
  cache = model.apply(variables, tokens.shape[0], prefix, mask, method=Transformer.prefill)
  pm = jnp.ones((tokens.shape[0], model.prefix_len), bool) if mask is None else mask
  key_valid = jnp.concatenate([pm, jnp.ones_like(tokens, bool)], axis=1)
  previous = jnp.concatenate([jnp.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)

  def step(cache, inputs):
    i, prev = inputs
    logits, cache = model.apply(variables, prev, i, cache, key_valid, method=Transformer.decode)
    return cache, logits

  _, logits = jax.lax.scan(step, cache, (jnp.arange(tokens.shape[1]), previous.T))
  return jnp.swapaxes(logits, 0, 1)


class CacheTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_cached_logits_equal_the_full_forward_at_every_position(self):
    for case, kwargs in CASES.items():
      model, params, tokens, prefix, mask = _setup(1, **kwargs)
      full = jax.jit(model.apply)({"params": params}, tokens, prefix, mask)
      cached = self.variant(lambda t: _cached_logits(model, params, t, prefix, mask))(tokens)
      chex.assert_shape(cached, (B, D, K))
      np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-5, err_msg=case)

  def test_cached_and_uncached_samplers_draw_the_same_tokens(self):
    for case, kwargs in CASES.items():
      model, params, _, prefix, mask = _setup(2, **kwargs)
      for temperature, top_k in ((1.0, 0),) if case != "caption" else ((0.8, 3),):
        # both samplers in one program (one compilation per case)
        draws = jax.jit(lambda r: {s: sample_tokens(model, params, r, B, prefix, mask,  # noqa: B023
                                                    temperature=temperature, top_k=top_k, sampler=s)  # noqa: B023
                                   for s in ("cached", "uncached")})(jax.random.PRNGKey(5))
        chex.assert_shape(draws["cached"], (B, D))
        np.testing.assert_array_equal(draws["cached"], draws["uncached"], err_msg=f"{case} T={temperature} k={top_k}")
        assert int(draws["cached"].max()) < K and int(draws["cached"].min()) >= 0


class PrefixTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_caption_padding_is_never_attended_to(self):
    model, params, tokens, prefix, mask = _setup(3, prefix_len=4, prefix_vocab=9, padded=True)
    logits_fn = self.variant(lambda p, c, m: model.apply({"params": p}, tokens, c, m))
    base = logits_fn(params, prefix, mask)
    # the padding token's embedding (row 0) may be anything
    noisy = jax.tree.map(lambda x: x, params)
    noisy["prefix_embed"]["embedding"] = params["prefix_embed"]["embedding"].at[0].set(5.0)
    np.testing.assert_allclose(logits_fn(noisy, prefix, mask), base, rtol=0, atol=1e-6)
    # the same caption padded to a longer length gives the same logits
    longer = _model(prefix_len=7, prefix_vocab=9)
    long_params = jax.tree.map(lambda x: x, params)
    long_params["prefix_pos_embed"] = jnp.concatenate(
        [params["prefix_pos_embed"], jax.random.normal(jax.random.PRNGKey(0), (3, 16))], axis=0)
    long_prefix = jnp.pad(prefix, ((0, 0), (0, 3)))
    long_logits = jax.jit(longer.apply)({"params": long_params}, tokens, long_prefix, long_prefix != 0)
    np.testing.assert_allclose(long_logits, base, rtol=1e-5, atol=1e-5)
    # while a real caption word does matter
    other = prefix.at[:, 0].set(prefix[:, 0] % 8 + 1)
    assert np.abs(np.asarray(logits_fn(params, other, mask) - base)).max() > 1e-4


def test_top_k_keeps_only_the_k_most_likely():
  logits = jnp.log(jnp.array([[0.1, 0.4, 0.2, 0.3]] * 2000))
  drawn = np.asarray(jax.jit(jax.vmap(lambda r: draw(r, logits[:1], 1.0, top_k=2)))(
      jax.random.split(jax.random.PRNGKey(0), 2000)))[:, 0]
  assert set(np.unique(drawn)) == {1, 3}
  assert abs((drawn == 1).mean() - 4 / 7) < 0.05
  full = np.asarray(jax.jit(draw, static_argnums=(2, 3))(jax.random.PRNGKey(1), logits, 1.0, 0))
  assert set(np.unique(full)) == {0, 1, 2, 3}


def test_dropout_is_active_only_in_training():
  model = _model(dropout=0.5)
  tokens = jax.random.randint(jax.random.PRNGKey(0), (B, D), 0, K)
  params = _params(1)
  apply = jax.jit(model.apply, static_argnames="train")
  eval_logits = apply({"params": params}, tokens)
  np.testing.assert_array_equal(apply({"params": params}, tokens), eval_logits)
  train_logits = apply({"params": params}, tokens, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  assert np.abs(np.asarray(train_logits - eval_logits)).max() > 1e-4


def test_width_must_divide_into_heads():
  with pytest.raises(ValueError, match="heads"):
    Transformer(num_tokens=K, seq_len=D, width=10, num_heads=3).init(jax.random.PRNGKey(0), jnp.zeros((1, D), int))
