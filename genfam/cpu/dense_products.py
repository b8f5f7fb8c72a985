"""Dense-layer products whose backward pass XLA:CPU runs on the bfloat16 matrix units (AMX).

XLA:CPU hands a dot to YNNPACK, whose bfloat16 kernels use Intel's AMX tiles, only when
the dot is canonical: bf16 x bf16 -> f32, the left operand contracting its minor (last)
dimension and the right one its major (first) dimension; any other bfloat16 dot it runs in
float32 on its generic path. A dense layer y = x @ w, x [M, K], w [K, N], then has two
products on AMX, the forward x @ w and the input gradient g @ w^T (XLA transposes the small
w), but not the kernel gradient x^T @ g, which JAX's transpose rule writes as one dot
contracting both operands' major dimension M. Written instead as an einsum over M split
into c chunks,

    dw[k, n] = sum_{c, m} x[c, m, k] g[c, m, n]           (x, g reshaped to [c, M / c, .]),

the same sum in another order, XLA lowers it to a physical transpose of both operands and
one canonical [K, M] @ [M, N] product, which YNNPACK runs on AMX. On an AMX Xeon (2 cores,
JAX 0.11.2; `python -m experiments.probes.kernel_probe --dot_forms`,
experiments/results/throughput/amx/) the image-GPT's kernel gradients in bfloat16 ran at
94-109 GFLOP/s as JAX writes them and 284-420 chunked, and its training step in bfloat16
took 2.6 s instead of 6.7 (float32: 2.4 s), one run each.

`dot_general` is a drop-in for `lax.dot_general` as Flax's `Dense` / `DenseGeneral` call
it (their `dot_general` attribute): products contracting the left operand's trailing
dimensions with the right one's leading ones go through `matmul`; any other dimension
numbers (batch dimensions, other axes) go to `lax.dot_general` unchanged. `for_dtype`
picks it where it pays: bfloat16 products on the CPU backend of a CPU with bf16 matrix
instructions (Linux's CPU flags amx_bf16 or avx512_bf16; only the first was measured). On a
CPU without them XLA runs every bf16 dot in float32 either way, and the transposes only cost:
on an AVX2 EPYC the image-GPT's bf16 step took 3.16-3.31 s with this module's products and
2.97-3.44 s without (3 alternating runs of `igpt_step.py` in that results folder).
"""
import functools
import math
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax import lax

CHUNKS = (8, 4, 2)   # the first that divides M; 8 also splits evenly over 2, 4 or 8 data-parallel devices


def kernel_grad(x, g, accumulate):  # x [M, K], g [M, N] -> x^T g [K, N] in `accumulate`
  """The kernel gradient x^T g of a dense layer, as the chunked einsum (module docstring)."""
  m = x.shape[0]
  c = next((c for c in CHUNKS if m % c == 0), 0)
  if not c:                            # odd M: JAX's own form
    return lax.dot_general(x, g, (((0,), (0,)), ((), ())), preferred_element_type=accumulate)
  return jnp.einsum("cmk,cmn->kn", x.reshape(c, m // c, x.shape[1]), g.reshape(c, m // c, g.shape[1]),
                    preferred_element_type=accumulate)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul(x, w, out_dtype):
  """x [M, K] @ w [K, N] -> [M, N] in `out_dtype`, accumulated in float32 (float64 for
  float64 operands); its kernel gradient is the chunked canonical product (module docstring),
  its input gradient g @ w^T, both accumulated likewise and returned in the operands' dtypes
  (as JAX's own transpose rules return them)."""
  return jnp.dot(x, w, preferred_element_type=jnp.promote_types(x.dtype, jnp.float32)).astype(out_dtype)


def _matmul_fwd(x, w, out_dtype):
  return matmul(x, w, out_dtype), (x, w)


def _matmul_bwd(out_dtype, residuals, g):  # g [M, N] in out_dtype
  x, w = residuals
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  g = g.astype(x.dtype)
  dx = jnp.dot(g, w.T, preferred_element_type=accumulate).astype(x.dtype)   # [M, K]
  dw = kernel_grad(x, g, accumulate).astype(w.dtype)                      # [K, N]
  return dx, dw


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """lax.dot_general's result; a dense contraction (lhs [..., K1..Kj] with rhs [K1..Kj, N...],
  no batch dimensions, same operand dtypes) through `matmul`, anything else through lax."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  lhs_contract = tuple(int(a) % lhs.ndim for a in lhs_contract)
  rhs_contract = tuple(int(a) % rhs.ndim for a in rhs_contract)
  j = len(lhs_contract)
  dense = (not lhs_batch and not rhs_batch and lhs.dtype == rhs.dtype
           and lhs_contract == tuple(range(lhs.ndim - j, lhs.ndim)) and rhs_contract == tuple(range(j)))
  if not dense:
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)
  lead, contracted, features = lhs.shape[:lhs.ndim - j], lhs.shape[lhs.ndim - j:], rhs.shape[j:]
  k = math.prod(contracted)
  out_dtype = jnp.dtype(preferred_element_type or lhs.dtype)
  y = matmul(lhs.reshape(-1, k), rhs.reshape(k, -1), out_dtype)          # [prod(lead), prod(features)]
  return y.reshape(lead + features)


@functools.lru_cache(maxsize=None)
def bf16_matrix_units() -> bool:
  """Whether this machine's CPU has bfloat16 matrix instructions (AMX or AVX512-BF16), from
  the flags in /proc/cpuinfo; False where that file does not exist."""
  if not os.path.exists("/proc/cpuinfo"):
    return False
  with open("/proc/cpuinfo") as f:
    flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
  return "amx_bf16" in flags or "avx512_bf16" in flags


def for_dtype(dtype: Any) -> Optional[Callable]:
  """The `dot_general` a Flax dense layer of product dtype `dtype` should use: this module's
  for bfloat16 on the CPU backend of a CPU with bf16 matrix instructions, else None (Flax's
  default, lax.dot_general)."""
  if jnp.dtype(dtype) == jnp.bfloat16 and jax.default_backend() == "cpu" and bf16_matrix_units():
    return dot_general
  return None
