"""A transposed convolution whose input gradient XLA:CPU runs on its fast path inside loops.

`ConvTranspose` is a drop-in for `flax.linen.ConvTranspose` (NHWC input, kernel
[kh, kw, Cin, Cout] applied by `lax.conv_transpose` with transpose_kernel=False,
'SAME' / 'VALID' padding, the same parameter names, shapes and initialisers and the
same auto-name 'ConvTranspose_<n>', so checkpoints carry over), with a `dtype` for
its products as `cpu.matmul_conv.Conv` has.

Why: the gradient of y = conv_transpose(x, k) with respect to x is a strided
convolution of dy with k whose kernel JAX labels 'HWOI' (k's in and out axes
swapped). Measured on the 2-core AVX-512 machine (jax 0.10.2, 4x4 kernel, stride 2,
16 -> 32 channels, batch 48, 28x28 -> 14x14): as a jitted function on its own either
label runs at ~60 GFLOP/s, but inside a loop (`lax.fori_loop`, `lax.scan`: where
AIS's HMC computes its gradients) the 'HWOI' convolution takes 111 ms per call
against 3 ms for the same product with an 'HWIO' kernel: 37x slower. The
generator's two transposed convolutions took 83% of the GAN's AIS
(`python -m experiments.probes.profile_step --eval --configs=gan@...`). So the input
gradient here is computed through the same transposed convolution written on the
kernel with its axes swapped ahead of time (jnp.swapaxes, a tiny copy), which
JAX's transpose rule turns into an 'HWIO' convolution; values are the same
(tested in float64), only the layout XLA sees changes.

On the CPU the forward product, and with it the kernel gradient (JAX's transpose
of it), is computed phase by phase (`cpu.phase_conv.input_dilated_conv`): the
dilated-input convolution lax writes multiplies 4x as many terms at stride 2, mostly
zeros, on a slow path. Forward + backward of the GAN generator's two layers at batch
64, on two cores, went from 104 and 230 ms to 7.5 and 35 ms (`experiments.probes.kernel_probe
--phases` compares lax's own form with this one). Reverse mode
only (jax.custom_vjp): nothing differentiates the generator forward-mode.
"""
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from genfam.cpu import phase_conv
from genfam.cpu.matmul_conv import ConvAttributes

_DIMS = ("NHWC", "HWIO", "NHWC")


def _plain(x, kernel, strides, padding, accumulate):
  """lax.conv_transpose's product: by phases on the CPU, lax's dilated form elsewhere."""
  if phase_conv.phases_pay():
    pads = phase_conv.transpose_pads(kernel.shape[:2], strides, padding)
    return phase_conv.input_dilated_conv(x, kernel, strides, pads, accumulate)
  return lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=_DIMS,
                            preferred_element_type=accumulate)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_transpose(x, kernel, strides: tuple, padding, accumulate=jnp.float32):
  """lax.conv_transpose(x [B, H, W, Cin], kernel [kh, kw, Cin, Cout]) -> [B, sH, sW, Cout] (for
  'SAME'), accumulated in `accumulate`, with the input gradient in XLA's canonical layout."""
  return _plain(x, kernel, strides, padding, accumulate)


def _forward(x, kernel, strides, padding, accumulate):
  return _plain(x, kernel, strides, padding, accumulate), (x, kernel)


def _backward(strides, padding, accumulate, residuals, dy):
  x, kernel = residuals
  swapped = jnp.swapaxes(kernel, 2, 3)                                   # [kh, kw, Cout, Cin]
  on_swapped = lambda x_: lax.conv_transpose(x_, swapped, strides, padding, dimension_numbers=("NHWC", "HWOI", "NHWC"),
                                             preferred_element_type=accumulate)
  dx = jax.vjp(on_swapped, x)[1](dy.astype(accumulate))[0]
  dk = jax.vjp(lambda k: _plain(x, k, strides, padding, accumulate), kernel)[1](dy.astype(accumulate))[0]
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv_transpose.defvjp(_forward, _backward)


class ConvTranspose(ConvAttributes):
  """flax.linen.ConvTranspose's parameters and maths (transpose_kernel=False, no kernel
  dilation), with products in `dtype` and a loop-friendly input gradient."""

  @nn.compact
  def __call__(self, x):  # [B, H, W, Cin] -> [B, H', W', features]
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), jnp.float32)
    accumulate = jnp.promote_types(self.dtype, jnp.float32)   # bfloat16 -> float32; float64 stays
    y = conv_transpose(x.astype(self.dtype), kernel.astype(self.dtype), tuple(self.strides), self.padding,
                       accumulate)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
    return y
