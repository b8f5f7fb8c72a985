"""Convolutions over a zero-dilated input, computed phase by phase, and the strided
convolution whose input gradient uses them.

The maths. With lhs (input) dilation s, padding (lo, hi) and a kernel of K taps,
per spatial axis,
  out[n] = sum_u vd[n + u - lo] k[u],   vd[s m] = v[m], vd[j] = 0 for j not a multiple of s,
for n in [0, N), N = s (L - 1) + 1 + lo + hi - K + 1 (lax.conv_general_dilated with
lhs_dilation=s). Only taps with n + u - lo = 0 (mod s) meet a stored value, so for the
outputs n = s i + p of phase p (p = 0..s-1), with u0 = (lo - p) mod s and
d = (p + u0 - lo) / s (an integer),
  out[s i + p] = sum_a v[i + a + d] k[u0 + s a],
a plain stride-1 'VALID' convolution of v (shifted by d, zero-padded) with the kernel's
taps u0, u0 + s, ... . The s^2 phases of a 2-D convolution are interleaved back
(depth-to-space). This computes exactly the products that meet stored values: the
dilated form multiplies s^2 times as many, mostly zeros.

Two of the networks' operations are such convolutions:
- a transposed convolution: lax.conv_transpose(x, k, s, padding) is
  conv_general_dilated(x, k, 1, pads, lhs_dilation=s) with pads from `transpose_pads`;
- the input gradient of a strided convolution y = conv(x, k, stride s, (pa, pb)):
  dx = conv_general_dilated(dy, rot180(k) with in/out swapped, 1,
  (K - 1 - pa, H + pa - s (Ho - 1) - 1), lhs_dilation=s).

A third regrouping, `upsampled_conv`, computes a convolution of a nearest-neighbour
upsampled input at the input's resolution (its docstring).

Why: XLA:CPU runs the dilated form on a slow path ('convolution-base-dilated' in a
profile). Measured on the 2-core AVX-512 machine (jax 0.10.2, float32, forward +
backward of one layer at batch 64, one core: `python -m experiments.probes.kernel_probe --phases`):
the GAN generator's 4x4 stride-2 transposed convolutions, 64 -> 64 channels at 7x7 ->
14x14 and 64 -> 32 at 14x14 -> 28x28, take 208 and 467 ms in lax's form, 26 and 103 ms
by phases; the strided convolutions of its discriminator and the U-Net's and VAE's
downsamplings 1.0-1.1x less with the input gradient by phases. Training steps: the GAN
1.92x, the VAE 1.13x and DDPM 1.05x (README, "Where the time goes"). On GPU and TPU the
library convolutions already skip the zeros, so `phases_pay()` keeps lax's forms there.
"""
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

DIMS = ("NHWC", "HWIO", "NHWC")


def phases_pay() -> bool:
  """Whether the phase form is used: on the CPU backend only (see the module docstring)."""
  return jax.default_backend() == "cpu"


def _axis_phases(length: int, taps: int, s: int, lo: int, hi: int):
  """Output size N of one axis and, per phase p: (u0, d, number of taps, outputs N_p)."""
  size = s * (length - 1) + 1 + lo + hi - taps + 1
  phases = []
  for p in range(s):
    u0 = (lo - p) % s
    phases.append((u0, (p + u0 - lo) // s, len(range(u0, taps, s)), -(-(size - p) // s) if size > p else 0))
  return size, phases


def interleave_phases(grid):
  """grid[p][q]: [B, M1, M2, C], the output phase (p, q) of s1 x s2 phases ->
  [B, M1 s1, M2 s2, C] with y[:, s1 i + p, s2 j + q] = grid[p][q][:, i, j]."""
  batch, m1, m2, c = grid[0][0].shape
  rows = [jnp.stack(cols, axis=3) for cols in grid]                                # each [B, M1, M2, s2, C]
  return jnp.stack(rows, axis=2).reshape(batch, m1 * len(grid), m2 * len(grid[0]), c)  # [B, M1, s1, M2, s2, C]


def input_dilated_conv(v, kernel, lhs_dilation, padding, accumulate=jnp.float32):
  """lax.conv_general_dilated(v [B, L1, L2, Cin], kernel [K1, K2, Cin, Cout], (1, 1),
  padding ((lo1, hi1), (lo2, hi2)), lhs_dilation) -> [B, N1, N2, Cout], phase by phase
  (module docstring), accumulated in `accumulate`."""
  batch, l1, l2, _ = v.shape
  k1, k2, _, cout = kernel.shape
  s1, s2 = lhs_dilation
  n1, phases1 = _axis_phases(l1, k1, s1, *padding[0])
  n2, phases2 = _axis_phases(l2, k2, s2, *padding[1])
  m1, m2 = -(-n1 // s1), -(-n2 // s2)                # outputs per phase, padded to equal
  zero = jnp.zeros((), v.dtype)
  rows = []
  for u0, d, t1, o1 in phases1:
    cols = []
    for w0, e, t2, o2 in phases2:
      if min(t1, t2, o1, o2) == 0:                   # no tap meets a stored value
        cols.append(jnp.zeros((batch, m1, m2, cout), accumulate))
        continue
      vq = lax.pad(v, zero, ((0, 0, 0), (-d, o1 + t1 - 2 + d - (l1 - 1), 0), (-e, o2 + t2 - 2 + e - (l2 - 1), 0),
                             (0, 0, 0)))
      out = lax.conv_general_dilated(vq, kernel[u0::s1, w0::s2], (1, 1), "VALID", dimension_numbers=DIMS,
                                     preferred_element_type=accumulate)             # [B, o1, o2, Cout]
      cols.append(jnp.pad(out, ((0, 0), (0, m1 - o1), (0, m2 - o2), (0, 0))))
    rows.append(cols)
  return interleave_phases(rows)[:, :n1, :n2]


def transpose_pads(kernel_size, strides, padding):
  """The (lo, hi) per axis with which lax.conv_transpose dilates and pads its input."""
  if not isinstance(padding, str):
    return tuple(tuple(p) for p in padding)
  pads = []
  for k, s in zip(kernel_size, strides):
    if padding == "SAME":
      total, lo = k + s - 2, (k - 1 if s > k - 1 else -(-(k + s - 2) // 2))
    elif padding == "VALID":
      total, lo = k + s - 2 + max(k - s, 0), k - 1
    else:
      raise ValueError(f"padding {padding!r} is not 'SAME', 'VALID' or explicit pairs")
    pads.append((lo, total - lo))
  return tuple(pads)


def _plain_strided(x, kernel, strides, padding, accumulate):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMS,
                                  preferred_element_type=accumulate)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def strided_conv(x, kernel, strides: tuple, padding, accumulate=jnp.float32):
  """conv(x [B, H, W, Cin], kernel [kh, kw, Cin, Cout], strides, padding) -> [B, Ho, Wo, Cout]
  (lax's, accumulated in `accumulate`), whose input gradient is computed by phases."""
  return _plain_strided(x, kernel, strides, padding, accumulate)


def _strided_forward(x, kernel, strides, padding, accumulate):
  return _plain_strided(x, kernel, strides, padding, accumulate), (x, kernel)


def _strided_backward(strides, padding, accumulate, residuals, dy):
  x, kernel = residuals
  (kh, kw), (h, w), (ho, wo) = kernel.shape[:2], x.shape[1:3], dy.shape[1:3]
  pads = lax.padtype_to_pads((h, w), (kh, kw), strides, padding) if isinstance(padding, str) else padding
  flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)                                  # [kh, kw, Cout, Cin]
  grad_pads = ((kh - 1 - pads[0][0], h + pads[0][0] - strides[0] * (ho - 1) - 1),
               (kw - 1 - pads[1][0], w + pads[1][0] - strides[1] * (wo - 1) - 1))
  dx = input_dilated_conv(dy.astype(x.dtype), flipped, strides, grad_pads, accumulate)
  dk = jax.vjp(lambda k: _plain_strided(x, k, strides, padding, accumulate), kernel)[1](dy.astype(accumulate))[0]
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


strided_conv.defvjp(_strided_forward, _strided_backward)


def _upsample_taps(taps: int, factor: int, lo: int, p: int):
  """For output phase p of 'nearest x factor, then a stride-1 conv with `taps` taps padded lo
  below': (first offset dmin, [T, taps] 0/1 matrix adding the taps that read the same input)."""
  offsets = [(p + u - lo) // factor for u in range(taps)]       # input index i + offset feeds out[factor i + p]
  dmin = min(offsets)
  group = jnp.zeros((max(offsets) - dmin + 1, taps)).at[jnp.array(offsets) - dmin, jnp.arange(taps)].set(1.0)
  return dmin, group


def upsampled_conv(x, kernel, factor: int, padding, accumulate=jnp.float32):
  """conv(nearest_upsample(x [B, H, W, Cin], factor), kernel [kh, kw, Cin, Cout], stride 1,
  padding) -> [B, factor H, factor W, Cout], computed at the input's resolution.

  With up[j] = x[j // r] (r = factor) and the convolution's low padding lo,
    out[r i + p] = sum_u up[r i + p + u - lo] k[u] = sum_u x[i + floor((p + u - lo) / r)] k[u],
  so phase p is a stride-1 convolution of x with the taps that read the same x[i + d]
  added together (an exact regrouping; zero padding outside x is zero padding outside
  up): for 3x3 and r = 2, four 2x2 convolutions at low resolution instead of one 3x3 at
  high resolution, 16 / 36 of the products.
  """
  _, h, w, _ = x.shape
  kh, kw, _, _ = kernel.shape
  pads = lax.padtype_to_pads((factor * h, factor * w), (kh, kw), (1, 1), padding) if isinstance(padding, str) \
      else padding
  if any(lo + hi != k - 1 for (lo, hi), k in zip(pads, (kh, kw))):
    raise ValueError(f"upsampled_conv keeps the size: padding {padding!r} must add kernel size - 1 per axis")
  zero = jnp.zeros((), x.dtype)
  rows = []
  for p in range(factor):
    d1, rows_group = _upsample_taps(kh, factor, pads[0][0], p)
    cols = []
    for q in range(factor):
      d2, cols_group = _upsample_taps(kw, factor, pads[1][0], q)
      k_pq = jnp.einsum("au,bv,uvio->abio", rows_group.astype(kernel.dtype), cols_group.astype(kernel.dtype), kernel)
      t1, t2 = k_pq.shape[:2]
      xq = lax.pad(x, zero, ((0, 0, 0), (-d1, t1 - 1 + d1, 0), (-d2, t2 - 1 + d2, 0), (0, 0, 0)))
      cols.append(lax.conv_general_dilated(xq, k_pq, (1, 1), "VALID", dimension_numbers=DIMS,
                                           preferred_element_type=accumulate))           # [B, H, W, Cout]
    rows.append(cols)
  return interleave_phases(rows)                                                       # [B, r H, r W, Cout]
