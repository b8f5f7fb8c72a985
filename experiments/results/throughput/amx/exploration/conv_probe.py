"""Throwaway: 3x3 conv forward+backward, lax vs im2col, f32 / bf16, im2col with the canonical kernel gradient."""
import sys, time
sys.path.insert(0, __file__.rsplit("/", 1)[0])
import jax, jax.numpy as jnp
from jax import lax
import canon_dot
from genfam.nets import matmul_conv

def best(fn, *a, reps=5):
  jax.block_until_ready(fn(*a)); b = 1e9
  for _ in range(reps):
    t = time.perf_counter(); jax.block_until_ready(fn(*a)); b = min(b, time.perf_counter() - t)
  return b

def im2col_canon(x, w):  # bf16 [B,H,W,C], [3,3,C,O] -> f32
  kh, kw, cin, cout = w.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  H, W = x.shape[1:3]
  patches = jnp.concatenate([xp[:, u:u + H, v:v + W] for u in range(3) for v in range(3)], axis=-1)
  y = canon_dot._mm(patches.reshape(-1, 9 * cin), w.reshape(9 * cin, cout), jnp.dtype(jnp.float32))
  return y.reshape(x.shape[0], H, W, cout)

forms = {
  "lax f32": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")),
  "lax bf16": lambda x, w: lax.conv_general_dilated(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=jnp.float32),
  "im2col bf16": lambda x, w: matmul_conv.conv_as_matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (1, 1), "SAME"),
  "im2col f32 canon": lambda x, w: im2col_canon(x, w),
  "im2col bf16 canon": lambda x, w: im2col_canon(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)),
}
for (B, S, C, O) in ((64, 28, 32, 32), (64, 28, 64, 32), (64, 14, 64, 64), (64, 28, 64, 64), (32, 14, 128, 128)):
  x = jax.random.normal(jax.random.PRNGKey(0), (B, S, S, C)); w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, C, O)) * 0.05
  flops = 3 * 2 * B * S * S * 9 * C * O
  out = []
  for name, f in forms.items():
    fb = jax.jit(jax.value_and_grad(lambda x, w, f=f: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1)))
    s = best(fb, x, w)
    out.append(f"{name} {s*1e3:.1f} ms ({flops/s/1e9:.0f})")
  print(f"{B}x{S}x{S}x{C}->{O} fwd+bwd: " + "; ".join(out), flush=True)
