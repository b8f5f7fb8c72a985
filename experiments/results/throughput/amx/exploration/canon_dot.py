"""Throwaway: a dense layer's dot_general whose kernel gradient is a chunked einsum (XLA makes it a
physically transposed, canonical product, which YNNPACK runs on AMX in bf16)."""
import functools, types
import numpy as np
import jax, jax.numpy as jnp
from jax import lax

def _chunks(m):
  for c in (8, 4, 2):
    if m % c == 0:
      return c
  return 0

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _mm(x2, w2, out_dtype):  # [M, K] @ [K, N] -> [M, N]
  return jnp.dot(x2, w2, preferred_element_type=jnp.promote_types(x2.dtype, jnp.float32)).astype(out_dtype)

def _mm_fwd(x2, w2, out_dtype):
  return _mm(x2, w2, out_dtype), (x2, w2)

def _mm_bwd(out_dtype, res, g):
  x2, w2 = res
  g = g.astype(x2.dtype)
  acc = jnp.promote_types(x2.dtype, jnp.float32)
  dx = jnp.dot(g, w2.T, preferred_element_type=acc).astype(x2.dtype)
  m, k = x2.shape
  c = _chunks(m)
  if c:
    dw = jnp.einsum("cmk,cmn->kn", x2.reshape(c, m // c, k), g.reshape(c, m // c, g.shape[1]),
                    preferred_element_type=acc)
  else:
    dw = lax.dot_general(x2, g, (((0,), (0,)), ((), ())), preferred_element_type=acc)
  return dx, dw.astype(w2.dtype)

_mm.defvjp(_mm_fwd, _mm_bwd)

def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kw):
  (lc, rc), (lb, rb) = dimension_numbers
  lc, rc = tuple(a % lhs.ndim for a in lc), tuple(a % rhs.ndim for a in rc)
  nk = len(lc)
  if lb or rb or lc != tuple(range(lhs.ndim - nk, lhs.ndim)) or rc != tuple(range(nk)):
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=preferred_element_type)
  out_dtype = preferred_element_type or jnp.result_type(lhs, rhs)
  lead, kdims, ndims = lhs.shape[:lhs.ndim - nk], lhs.shape[lhs.ndim - nk:], rhs.shape[nk:]
  y = _mm(lhs.reshape(-1, int(np.prod(kdims))), rhs.reshape(int(np.prod(kdims)), -1), jnp.dtype(out_dtype))
  return y.reshape(lead + ndims)

def patch_flax():
  import flax.linen.linear as fl
  fl.lax = types.SimpleNamespace(**{k: getattr(lax, k) for k in dir(lax) if not k.startswith("__")})
  fl.lax.dot_general = dot_general
