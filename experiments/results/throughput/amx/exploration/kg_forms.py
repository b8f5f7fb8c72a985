"""Throwaway: bf16 kernel-gradient forms on this CPU, with the optimized HLO of each."""
import time, jax, jax.numpy as jnp
from jax import lax
def best(fn, *a, reps=5):
  jax.block_until_ready(fn(*a)); b = 1e9
  for _ in range(reps):
    t = time.perf_counter(); jax.block_until_ready(fn(*a)); b = min(b, time.perf_counter() - t)
  return b
tn = (((0,), (0,)), ((), ()))
for (M, K, N) in ((12544, 128, 384), (12544, 512, 128)):
  x = jax.random.normal(jax.random.PRNGKey(0), (M, K)).astype(jnp.bfloat16)
  g = jax.random.normal(jax.random.PRNGKey(1), (M, N)).astype(jnp.bfloat16)
  xt = jnp.asarray(x.T)  # row-major [K, M], made by its own call
  forms = {
    "tn_bf16out": (lambda x, g: lax.dot_general(x, g, tn), (x, g)),
    "tn_f32out": (lambda x, g: lax.dot_general(x, g, tn, preferred_element_type=jnp.float32), (x, g)),
    "tn_f32_operands": (lambda x, g: lax.dot_general(x.astype(jnp.float32), g.astype(jnp.float32), tn), (x, g)),
    "given_xT_f32out": (lambda xt, g: jnp.dot(xt, g, preferred_element_type=jnp.float32), (xt, g)),
    "transpose_only": (lambda x: jnp.transpose(x) * 1, (x,)),
    "chunk8_bmm": (lambda x, g: jnp.einsum("cmk,cmn->kn", x.reshape(8, M // 8, K), g.reshape(8, M // 8, N), preferred_element_type=jnp.float32), (x, g)),
  }
  for name, (f, a) in forms.items():
    fn = jax.jit(f)
    s = best(fn, *a)
    hlo = fn.lower(*a).compile().as_text()
    kinds = sorted({l.split("kind=")[1].split(",")[0] for l in hlo.splitlines() if "kind=" in l})
    dots = [l.strip()[:170] for l in hlo.splitlines() if " dot(" in l][:2]
    ynn = "ynn" in hlo or "__yn" in hlo
    print(f"{M}x{K}->{N} {name}: {s*1e3:.2f} ms ({2*M*K*N/s/1e9:.0f} GFLOP/s) ynn={ynn} kinds={kinds}")
    for d in dots: print("      ", d)
