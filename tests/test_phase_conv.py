"""cpu/phase_conv: dilated-input convolutions by phases equal lax's dilated form, and the
strided convolution's phase-form input gradient equals JAX's, in float64 (brute force over
sizes, kernels, dilations and paddings)."""
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from genfam.cpu import phase_conv
from genfam.cpu.matmul_conv import Conv
from tests.conftest import assert_values_and_gradients_equal

pytestmark = pytest.mark.slow  # genfam/cpu's kernels against lax, value and gradient, case by case

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _cases():
  """(length, taps, dilation, lo, hi) with a non-empty output: taps fewer than, equal to and more
  than the dilation, negative (cropping) and positive padding on either side."""
  grid = itertools.chain(itertools.product((4, 7), (2, 3, 5), (2, 3), (-1, 0, 3), (-1, 1, 4)),
                         itertools.product((5,), (1, 4), (1, 2), (0, 2), (0, 2)))
  for length, taps, s, lo, hi in grid:
    if s * (length - 1) + 1 + lo + hi - taps + 1 > 0 and lo + length > 0:
      yield length, taps, s, lo, hi


def test_input_dilated_conv_equals_lax_for_every_small_case():
  kv, kk = jax.random.split(jax.random.key(0))
  checked = 0
  for length, taps, s, lo, hi in _cases():
    v = jax.random.normal(kv, (2, length, length + 1, 3), jnp.float64)
    k = jax.random.normal(kk, (taps, max(taps - 1, 1), 3, 4), jnp.float64)
    pads = ((lo, hi), (hi, lo))                        # the two axes differ in size, taps and padding
    try:
      want = jax.lax.conv_general_dilated(v, k, (1, 1), pads, lhs_dilation=(s, s), dimension_numbers=DIMS)
    except (TypeError, ValueError):                     # lax refuses it (an empty axis): nothing to compare
      continue
    got = phase_conv.input_dilated_conv(v, k, (s, s), pads, jnp.float64)
    assert got.shape == want.shape, (length, taps, s, lo, hi)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=str((length, taps, s, lo, hi)))
    checked += 1
  assert checked > 100


@pytest.mark.parametrize("kernel_size,strides,padding", [((4, 4), (2, 2), "SAME"), ((3, 3), (2, 2), "VALID"),
                                                         ((5, 2), (3, 2), "SAME"), ((1, 1), (2, 2), "SAME")])
def test_transpose_pads_reproduce_lax_conv_transpose(kernel_size, strides, padding):
  x = jax.random.normal(jax.random.key(1), (2, 5, 6, 3), jnp.float64)
  k = jax.random.normal(jax.random.key(2), kernel_size + (3, 4), jnp.float64)
  want = jax.lax.conv_transpose(x, k, strides, padding, dimension_numbers=DIMS)
  pads = phase_conv.transpose_pads(kernel_size, strides, padding)
  np.testing.assert_allclose(phase_conv.input_dilated_conv(x, k, strides, pads, jnp.float64), want,
                             rtol=1e-12, atol=1e-12)


class StridedConvTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(((2, 2), "SAME", (3, 3), 7), ((2, 2), "SAME", (4, 4), 8), ((2, 2), "VALID", (3, 3), 9),
                            ((3, 2), "SAME", (3, 4), 10), ((2, 2), ((1, 0), (2, 1)), (3, 3), 6))
  def test_values_and_gradients_equal_lax(self, strides, padding, kernel_size, size):
    kx, kk, kg = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(kx, (3, size, size + 1, 4), jnp.float64)
    kernel = jax.random.normal(kk, kernel_size + (4, 5), jnp.float64)
    plain = lambda x, k: jax.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DIMS)
    ours = lambda x, k: phase_conv.strided_conv(x, k, strides, padding, jnp.float64)
    assert_values_and_gradients_equal(ours, plain, x, kernel, kg, self.variant)


def test_strided_conv_module_keeps_flax_parameters_and_maths():
  import flax.linen as nn
  x = jax.random.normal(jax.random.key(4), (2, 9, 9, 3), jnp.float64)
  ours, theirs = Conv(8, (3, 3), strides=(2, 2)), nn.Conv(8, (3, 3), strides=(2, 2))
  params = theirs.init(jax.random.key(5), x)
  chex.assert_trees_all_equal_shapes_and_dtypes(ours.init(jax.random.key(5), x), params)
  loss = lambda module: lambda p: jnp.sum(jnp.sin(module.apply(p, x)))
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(jax.grad(loss(ours))(params), jax.grad(loss(theirs))(params), rtol=1e-5, atol=1e-5)
  bf16 = jax.grad(loss(Conv(8, (3, 3), strides=(2, 2), dtype=jnp.bfloat16)))(
      jax.tree.map(lambda a: a.astype(jnp.float32), params))
  chex.assert_trees_all_close(bf16, jax.grad(loss(theirs))(params), rtol=0.05, atol=0.05)


def _upsample_then_conv(factor, padding):
  def f(x, k):
    b, h, w, c = x.shape
    up = jax.image.resize(x, (b, factor * h, factor * w, c), "nearest")
    return jax.lax.conv_general_dilated(up, k, (1, 1), padding, dimension_numbers=DIMS)
  return f


class UpsampledConvTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((2, (3, 3), "SAME"), (3, (3, 3), "SAME"), (2, (4, 2), "SAME"), (2, (1, 1), "SAME"),
                            (2, (5, 3), ((1, 3), (2, 0))))
  def test_values_and_gradients_equal_resize_then_conv(self, factor, kernel_size, padding):
    kx, kk, kg = jax.random.split(jax.random.key(6), 3)
    x = jax.random.normal(kx, (2, 4, 5, 3), jnp.float64)
    kernel = jax.random.normal(kk, kernel_size + (3, 4), jnp.float64)
    ours = lambda x, k: phase_conv.upsampled_conv(x, k, factor, padding, jnp.float64)
    assert_values_and_gradients_equal(ours, _upsample_then_conv(factor, padding), x, kernel, kg, self.variant)


def test_a_padding_that_changes_the_size_is_refused():
  x = jnp.zeros((1, 4, 4, 2))
  with pytest.raises(ValueError, match="keeps the size"):
    phase_conv.upsampled_conv(x, jnp.zeros((3, 3, 2, 2)), 2, "VALID")


def test_upsampling_conv_module_equals_resize_then_flax_conv():
  import flax.linen as nn
  x = jax.random.normal(jax.random.key(7), (2, 7, 7, 3), jnp.float64)
  ours = Conv(8, (3, 3), upsample=2)
  params = nn.Conv(8, (3, 3)).init(jax.random.key(8), x)
  theirs = lambda p: nn.Conv(8, (3, 3)).apply(p, jax.image.resize(x, (2, 14, 14, 3), "nearest"))
  chex.assert_trees_all_equal_shapes_and_dtypes(ours.init(jax.random.key(8), x), params)
  np.testing.assert_allclose(ours.apply(params, x), theirs(params), rtol=1e-6, atol=1e-6)
  loss = lambda f: lambda p: jnp.sum(jnp.sin(f(p)))
  chex.assert_trees_all_close(jax.grad(loss(lambda p: ours.apply(p, x)))(params), jax.grad(loss(theirs))(params),
                              rtol=1e-5, atol=1e-5)
