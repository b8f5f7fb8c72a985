"""The image-GPT network's training step alone (value_and_grad of the next-pixel cross-entropy
and an Adam update; no data pipeline, EMA or clipping), timed on this process's CPU devices.

  python experiments/results/throughput/amx/igpt_step.py float32 bfloat16 bfloat16+flax_products

Each argument is a product dtype, as genfam picks the dense layers' products for it
(`genfam.nets.dense_products.for_dtype`), or with '+flax_products' / '+dense_products' forcing
Flax's default lax.dot_general / `dense_products.dot_general` for them. 4 blocks, 4 heads, width 128, 784
tokens, batch 16, query_block 196 (`igpt@model.depth=4`'s network); 4 timed steps after 2
compiling ones. Run with PYTHONPATH at the repository root.
"""
import sys
import time

import jax
import jax.numpy as jnp
import optax

from genfam.nets import dense_products, transformer


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
  chosen = dense_products.for_dtype
  for arg in sys.argv[1:]:
    name, _, mode = arg.partition("+")
    forced = {"flax_products": lambda dtype: None, "dense_products": lambda dtype: dense_products.dot_general}
    dense_products.for_dtype = forced.get(mode, chosen)
    seconds, value = step_seconds(jnp.dtype(name))
    print(f"{arg}: {1e3 * seconds:.0f} ms/step, {16 / seconds:.2f} images/s (loss after 6 steps {value:.4f})",
          flush=True)
