"""Known answers for experiments/benchmarks/flop_count.py: PyTorch's FlopCounterMode convention
(2 FLOPs per multiply-add of matmuls and convolutions, nothing else)."""
import jax
import jax.numpy as jnp
import pytest

from experiments.benchmarks.flop_count import matmul_conv_flops


def conv(x, w, stride=1, groups=1):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=groups)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("wrap", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_convolution_forward_and_both_gradients(stride, wrap):
  x, w = jnp.ones((4, 9, 9, 3)), jnp.ones((3, 3, 3, 16))
  out_h = -(-9 // stride)
  forward = 2 * 4 * out_h * out_h * 16 * 3 * 3 * 3   # 2 * B * Ho * Wo * Cout * kh * kw * Cin
  assert matmul_conv_flops(wrap(lambda x, w: conv(x, w, stride)), x, w) == forward
  both = jax.grad(lambda x, w: jnp.sin(conv(x, w, stride)).sum(), argnums=(0, 1))
  # forward, input gradient and (batch-grouped) weight gradient: each the forward's multiply-adds
  assert matmul_conv_flops(wrap(both), x, w) == 3 * forward


@pytest.mark.parametrize("wrap", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_transposed_convolution_counts_its_input_size_not_the_inserted_zeros(wrap):
  x, w = jnp.ones((3, 7, 7, 5)), jnp.ones((4, 4, 5, 6))
  f = lambda x, w: jax.lax.conv_transpose(x, w, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  forward = 2 * 3 * 7 * 7 * 16 * 5 * 6            # every input value times every tap (none cropped by VALID)
  assert matmul_conv_flops(wrap(f), x, w) == forward
  both = jax.grad(lambda x, w: jnp.sin(f(x, w)).sum(), argnums=(0, 1))
  assert matmul_conv_flops(wrap(both), x, w) == 3 * forward   # input gradient: a strided conv; weight gradient


def test_dead_code_is_not_counted_and_the_gan_generator_layer_counts_three_products():
  x = jnp.ones((6, 6))
  assert matmul_conv_flops(lambda x: (x @ x, x + 1)[1], x) == 0
  from genfam.cpu.conv_transpose import conv_transpose      # custom_vjp whose backward calls jax.vjp
  x, w = jnp.ones((2, 7, 7, 8)), jnp.ones((4, 4, 8, 4))
  both = jax.grad(lambda x, w: jnp.sin(conv_transpose(x, w, (2, 2), "SAME")).sum(), argnums=(0, 1))
  forward = 2 * 2 * 7 * 7 * 16 * 8 * 4   # by phases: 4 stride-1 2x2 convolutions, 7x7 outputs each
  assert matmul_conv_flops(both, x, w) == 3 * forward      # its backward's jax.vjp forward is dead code


def test_grouped_convolution_counts_inputs_per_group():
  x, w = jnp.ones((2, 5, 5, 8)), jnp.ones((3, 3, 2, 8))       # 4 groups of 2 input channels
  assert matmul_conv_flops(lambda x, w: conv(x, w, groups=4), x, w) == 2 * 2 * 5 * 5 * 8 * 9 * 2


def test_batched_matmul_and_dense_layer():
  a, b = jnp.ones((5, 7, 3)), jnp.ones((5, 3, 11))
  assert matmul_conv_flops(jnp.matmul, a, b) == 2 * 5 * 7 * 3 * 11
  x, w = jnp.ones((6, 10)), jnp.ones((10, 4))
  loss = lambda w: jnp.tanh(x @ w).sum()
  assert matmul_conv_flops(jax.grad(loss), w) == 2 * (2 * 6 * 10 * 4)   # forward + weight gradient


def test_scan_multiplies_cond_takes_the_costlier_branch_while_is_refused():
  m = jnp.ones((6, 6))
  scanned = lambda m: jax.lax.scan(lambda c, _: (c @ c, None), m, None, length=4)[0]
  assert matmul_conv_flops(scanned, m) == 4 * 2 * 6 ** 3
  branch = lambda p, m: jax.lax.cond(p, lambda m: m @ m @ m, lambda m: m, m)
  assert matmul_conv_flops(branch, True, m) == 2 * 2 * 6 ** 3
  with pytest.raises(ValueError, match="while loop"):
    matmul_conv_flops(lambda m, n: jax.lax.fori_loop(0, n, lambda i, c: c @ c, m), m, 3)
