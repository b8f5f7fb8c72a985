"""The image-GPT network's training step alone (value_and_grad of the next-pixel cross-entropy
and an Adam update; no data pipeline, EMA or clipping), timed on this process's CPU devices: the
probe behind docs/performance.md, "On an AMX CPU" (bf16 products and AMX).

  .venv/bin/python -m experiments.probes.igpt_step_probe float32 bfloat16 bfloat16+flax_products
  bash scripts/amx_attention_check.sh OUT_DIR     # with kernel_probe --attention_forms, for an AMX CPU

Each argument is a product dtype, as genfam picks the dense layers' products for it
(`genfam.cpu.dense_products.for_dtype`), or with '+flax_products' / '+dense_products' forcing
Flax's default lax.dot_general / `dense_products.dot_general` for them, or with
'+chunked_attention' the attention's batched products (forward and backward) written so that each
one reaches XLA in canonical form (`chunked_blocked_attention` below: the non-canonical ones as
the chunked einsums `kernel_probe --attention_forms` times, as dense_products' kernel gradient;
tests/test_experiment_scripts.py checks it equals genfam's attention in float64).
4 blocks, 4 heads, width 128, 784 tokens, batch 16, query_block 196 (`igpt@model.depth=4`'s
network); 4 timed steps after 2 compiling ones. (Until commit cef5815: `igpt_step.py`, beside its results.)
"""
import functools
import sys
import time

import jax
import jax.numpy as jnp
import optax

from experiments.probes.kernel_probe import batched_nn, batched_nt_chunked, batched_tn_chunked
from genfam.cpu import dense_products
from genfam.nets import transformer


@jax.custom_vjp
def scores(q, k):  # q [B, H, M, D], k [B, H, N, D] -> q k^T [B, H, M, N] accumulated
  return batched_nt_chunked(q, k)


def _scores_bwd(res, g):
  q, k = res
  g = g.astype(q.dtype)
  return batched_nn(g, k).astype(q.dtype), batched_tn_chunked(g, q).astype(k.dtype)


scores.defvjp(lambda q, k: (scores(q, k), (q, k)), _scores_bwd)


@jax.custom_vjp
def mix(p, v):  # p [B, H, M, N], v [B, H, N, D] -> p v [B, H, M, D] accumulated
  return batched_nn(p, v)


def _mix_bwd(res, g):
  p, v = res
  g = g.astype(v.dtype)
  return batched_nt_chunked(g, v).astype(p.dtype), batched_tn_chunked(p, g).astype(v.dtype)


mix.defvjp(lambda p, v: (mix(p, v), (p, v)), _mix_bwd)


# transformer.blocked_causal_attention with `scores` and `mix` as its two products
chunked_blocked_attention = functools.partial(transformer.blocked_causal_attention,
                                              products=(scores, lambda p, v: mix(p, v).astype(v.dtype)))


def step_seconds(dtype, batch: int = 16, steps: int = 4) -> tuple[float, float]:
  net = transformer.Transformer(num_tokens=256, seq_len=784, width=128, depth=4, num_heads=4, dtype=dtype,
                                query_block=196)
  tokens = jax.random.randint(jax.random.PRNGKey(0), (batch, 784), 0, 256)
  params = net.init(jax.random.PRNGKey(1), tokens)
  opt = optax.adam(1e-3)

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(net.apply(p, tokens), tokens).mean()

  @jax.jit
  def step(state):
    p, o = state
    value, grads = jax.value_and_grad(loss)(p)
    updates, o = opt.update(grads, o, p)
    return (optax.apply_updates(p, updates), o), value

  state = (params, opt.init(params))
  for _ in range(2):
    state, value = step(state)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(steps):
    state, value = step(state)
  jax.block_until_ready(state)
  return (time.perf_counter() - start) / steps, float(value)


if __name__ == "__main__":
  chosen, attention = dense_products.for_dtype, transformer.blocked_causal_attention
  for arg in sys.argv[1:]:
    name, _, mode = arg.partition("+")
    forced = {"flax_products": lambda dtype: None, "dense_products": lambda dtype: dense_products.dot_general}
    dense_products.for_dtype = forced.get(mode, chosen)
    transformer.blocked_causal_attention = chunked_blocked_attention if mode == "chunked_attention" else attention
    seconds, value = step_seconds(jnp.dtype(name))
    print(f"{arg}: {1e3 * seconds:.0f} ms/step, {16 / seconds:.2f} images/s (loss after 6 steps {value:.4f})",
          flush=True)
