"""A convolution layer with a chosen product dtype, computed by XLA's convolution or as one
matrix product (im2col).

`Conv` is a drop-in for `flax.linen.Conv` (NHWC, HWIO kernel, same parameter names,
shapes and initialisers, and the same auto-name 'Conv_<n>', so checkpoints carry over)
with two more attributes:
- dtype: the product's input dtype (float32 or bfloat16); parameters stay float32,
  products accumulate and return in float32 (float64 stays float64);
- impl: 'xla' (lax.conv_general_dilated, the default; a strided one takes its input
  gradient by phases on the CPU, `cpu.phase_conv.strided_conv`, and a 1x1 stride-1 one
  is a matmul there, `pointwise_conv`) or 'matmul' (im2col: the kh*kw
  shifted, strided views of the padded input concatenated on channels,
  [B*Ho*Wo, kh*kw*Cin] @ [kh*kw*Cin, Cout]).
Both compute out[b, i, j, o] = sum_{u, v, c} xpad[b, s*i + u, s*j + v, c] k[u, v, c, o] + bias[o]
with the padding of lax's 'SAME' / 'VALID' rules.

Why 'xla' is the default everywhere: the matmul form was written to reach the CPU's
bfloat16 matrix units (AMX), which XLA's convolutions do not use; measured on the
2-core AMX machine (`python -m experiments.probes.kernel_probe`, forward + backward, batch 64,
28x28, 3x3) it is slower than XLA's convolution in bfloat16 (57 vs 98 GFLOP/s at 64
channels, 111 vs 128 at 128) and within 10% of it in float32, because XLA's bfloat16
GEMMs with transposed operands (the backward pass) do not reach AMX either. The probe
re-measures it on other machines. With the kernel gradient written as XLA does run on AMX
(`cpu.dense_products`), im2col in bf16 was still 1.2-2.6x slower than XLA's float32
convolution at the U-Net's 28x28 shapes on an AMX Xeon
(experiments/results/throughput/amx/, "Tried and not kept").
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from genfam.errors import GenfamError
from genfam.cpu import phase_conv

IMPLS = ("xla", "matmul")


def conv_as_matmul(x, kernel, strides: Sequence[int], padding, accumulate=jnp.float32):
  """The convolution of x [B, H, W, Cin] with kernel [kh, kw, Cin, Cout] as one matmul of
  im2col patches -> [B, Ho, Wo, Cout], accumulated in `accumulate`."""
  kh, kw, cin, cout = kernel.shape
  pads = lax.padtype_to_pads(x.shape[1:3], (kh, kw), strides, padding) if isinstance(padding, str) else padding
  xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
  ho = (xp.shape[1] - kh) // strides[0] + 1
  wo = (xp.shape[2] - kw) // strides[1] + 1
  views = [lax.slice(xp, (0, u, v, 0), (xp.shape[0], u + (ho - 1) * strides[0] + 1,
                                        v + (wo - 1) * strides[1] + 1, cin), (1, strides[0], strides[1], 1))
           for u in range(kh) for v in range(kw)]                                  # each [B, Ho, Wo, Cin]
  patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)       # [B, Ho, Wo, kh*kw*Cin]
  out = jnp.dot(patches.reshape(-1, kh * kw * cin), kernel.reshape(kh * kw * cin, cout),
                preferred_element_type=accumulate)
  return out.reshape(x.shape[0], ho, wo, cout)


def pointwise_conv(x, kernel, accumulate=jnp.float32):
  """A 1x1 stride-1 convolution as the matmul it is: x [B, H, W, Cin] @ kernel[0, 0] [Cin, Cout]
  -> [B, H, W, Cout]. On the CPU its weight gradient is then one GEMM over (B, H, W) with a
  transposed operand, where XLA's convolution path first copies the activations into a
  [Cin, H, W, B] layout (`python -m experiments.probes.kernel_probe --pointwise`)."""
  return lax.dot_general(x, kernel[0, 0], (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=accumulate)


class ConvAttributes(nn.Module):
  """The attributes flax's Conv and ConvTranspose share, with the product dtype."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Any = "SAME"
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros
  dtype: Any = jnp.float32


class Conv(ConvAttributes):
  """flax.linen.Conv's parameters and maths, computed by XLA's convolution or as a matmul.

  upsample=r: the convolution of the input upsampled r x by nearest neighbour
  (jax.image.resize 'nearest' to r H x r W, then this layer, stride 1), the same
  parameters; on the CPU computed at the input's resolution
  (`cpu.phase_conv.upsampled_conv`: 16 / 36 of the products for 3x3, r = 2)."""
  impl: str = "xla"
  upsample: int = 1

  @nn.compact
  def __call__(self, x):  # [B, H, W, Cin] -> [B, Ho, Wo, features] (float32 for float32 / bfloat16)
    kh, kw = self.kernel_size
    strides = tuple(self.strides) if self.strides is not None else (1, 1)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), jnp.float32)
    xc, kc = x.astype(self.dtype), kernel.astype(self.dtype)
    accumulate = jnp.promote_types(self.dtype, jnp.float32)   # bfloat16 -> float32; float64 stays
    if self.impl not in IMPLS:
      raise GenfamError(f"unknown convolution impl {self.impl!r}; use one of {IMPLS}")
    if self.upsample > 1 and self.impl == "xla" and strides == (1, 1) and phase_conv.phases_pay():
      y = phase_conv.upsampled_conv(xc, kc, self.upsample, self.padding, accumulate)
    else:
      if self.upsample > 1:
        b, h, w, c = xc.shape
        xc = jax.image.resize(xc, (b, self.upsample * h, self.upsample * w, c), "nearest")
      y = self._product(xc, kc, strides, accumulate)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
    return y

  def _product(self, xc, kc, strides, accumulate):
    if self.impl == "matmul":
      return conv_as_matmul(xc, kc, strides, self.padding, accumulate)
    if kc.shape[:2] == (1, 1) and strides == (1, 1) and self.padding in ("SAME", "VALID") and phase_conv.phases_pay():
      return pointwise_conv(xc, kc, accumulate)
    if strides != (1, 1) and phase_conv.phases_pay():      # input gradient by phases on the CPU
      return phase_conv.strided_conv(xc, kc, strides, self.padding, accumulate)
    return lax.conv_general_dilated(xc, kc, strides, self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    preferred_element_type=accumulate)
