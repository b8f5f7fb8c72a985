"""Throwaway device probe: the image-GPT network's train step (value_and_grad + adam), fp32 vs bf16,
one JAX device, on whatever cores the process may use."""
import sys, time
import jax, jax.numpy as jnp, optax
from genfam.nets.transformer import Transformer

def run(dtype, depth=4, batch=16, steps=5):
  net = Transformer(num_tokens=256, seq_len=784, width=128, depth=depth, num_heads=4, dtype=dtype, query_block=196)
  tokens = jax.random.randint(jax.random.PRNGKey(0), (batch, 784), 0, 256)
  params = net.init(jax.random.PRNGKey(1), tokens)
  opt = optax.adam(1e-3)
  state = (params, opt.init(params))
  def loss(p):
    logits = net.apply(p, tokens)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean()
  @jax.jit
  def step(state):
    p, o = state
    l, g = jax.value_and_grad(loss)(p)
    u, o = opt.update(g, o, p)
    return (optax.apply_updates(p, u), o), l
  for _ in range(2):
    state, l = step(state)
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(steps):
    state, l = step(state)
  jax.block_until_ready(state)
  s = (time.perf_counter() - t) / steps
  print(f"igpt net depth {depth} batch {batch} {jnp.dtype(dtype).name}: {s*1e3:.0f} ms/step, {batch/s:.2f} images/s, loss {float(l):.4f}", flush=True)

import importlib
sys.path.insert(0, __file__.rsplit("/", 1)[0])
import canon_dot
import flax.linen.linear as fl
plain = fl.lax
for d in sys.argv[1:] or ["float32", "bfloat16"]:
  name, _, mode = d.partition("+")
  if mode == "canon":
    canon_dot.patch_flax()
  else:
    fl.lax = plain
  print(mode or "plain", end=": ")
  run(jnp.dtype(name), steps=4)
