"""Matmul and convolution FLOPs of a JAX function, counted as PyTorch's FlopCounterMode counts them.

XLA's cost analysis (what `benchmark_speed` reports as GFLOP/step) counts every
operation, elementwise ones included, and per device. PyTorch's
`torch.utils.flop_counter.FlopCounterMode` counts only matrix products and
convolutions (forward and backward), 2 FLOPs per multiply-add. To put a genfam
step and a PyTorch peer's step on one scale, `matmul_conv_flops` walks the
function's jaxpr and counts the same way:

  dot_general:           2 * prod(batch dims) * M * K * N
  conv_general_dilated:  2 * prod(output shape) * prod(kernel window) * (input features per group);
                         a zero-dilated input counts by its stored values, without the zeros, as
                         PyTorch counts a transposed convolution (see conv_flops)

over the whole (global, unpartitioned) computation after dead-code elimination, inside nested jaxprs (jit,
custom_vjp/jvp, remat, cond: the costliest branch; scan: times its length).
A `while` loop's trip count is unknown before it runs, so it is refused.
"""
import math

import jax
from jax._src.interpreters import partial_eval as pe   # dce_jaxpr: no public name yet
from jax.extend.core import ClosedJaxpr, Jaxpr


def dot_general_flops(eqn) -> int:
  """2 * batch * M * K * N of one dot_general: all lhs elements times the rhs's free dims."""
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
  rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
  return 2 * math.prod(lhs) * math.prod(rhs_free)


def conv_flops(eqn) -> int:
  """2 * output elements * kernel window * input features per group of one convolution
  (batch-grouped convolutions and dilated windows, which JAX uses for weight gradients,
  count the same way).

  A convolution of a zero-dilated input (a transposed convolution, a strided one's input
  gradient, a transposed one's weight gradient) counts as PyTorch counts transposed ones,
  by the stored input values and without the zeros: 2 * input elements * output features
  per group * prod over spatial axes of min(window, output size) (each stored value meets
  at most that many taps per axis; the min is the kernel for all three cases)."""
  lhs = eqn.invars[0].aval.shape
  rhs = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  _, rhs_spec, out_spec = eqn.params["dimension_numbers"]   # (batch/out feature, feature/in, *spatial)
  window = [rhs[d] for d in rhs_spec[2:]]
  if any(d > 1 for d in eqn.params.get("lhs_dilation") or ()):
    taps = math.prod(min(k, out[d]) for k, d in zip(window, out_spec[2:]))
    return 2 * math.prod(lhs) * taps * rhs[rhs_spec[0]] // eqn.params["feature_group_count"]
  return 2 * math.prod(out) * math.prod(window) * rhs[rhs_spec[1]]


def _sub_jaxprs(value):
  if isinstance(value, ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def jaxpr_flops(jaxpr) -> int:
  """Matmul + convolution FLOPs of a jaxpr, nested jaxprs included."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total += dot_general_flops(eqn)
    elif name == "conv_general_dilated":
      total += conv_flops(eqn)
    elif name == "while":
      raise ValueError("matmul_conv_flops: a while loop's trip count is unknown before it runs; "
                       "count a function without lax.while_loop / fori_loop with a traced bound")
    elif name == "cond":
      total += max(jaxpr_flops(b.jaxpr) for b in eqn.params["branches"])
    else:
      inner = sum(jaxpr_flops(j) for v in eqn.params.values() for j in _sub_jaxprs(v))
      total += inner * (eqn.params["length"] if name == "scan" else 1)
  return total


def matmul_conv_flops(fn, *args, **kwargs) -> int:
  """Matmul + convolution FLOPs of one call fn(*args, **kwargs), PyTorch's convention, after
  dead-code elimination (as XLA compiles it: a custom_vjp backward that calls jax.vjp
  traces a forward pass whose output it never uses)."""
  jaxpr = jax.make_jaxpr(fn)(*args, **kwargs).jaxpr
  jaxpr, _ = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
  return jaxpr_flops(jaxpr)
