"""cpu/conv_transpose: flax.linen.ConvTranspose's maths and parameters, with an input gradient
that XLA:CPU runs on its canonical kernel layout. Checked in float64 against lax's own."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from genfam.cpu.conv_transpose import ConvTranspose, conv_transpose
from tests.conftest import assert_values_and_gradients_equal

pytestmark = pytest.mark.slow  # genfam/cpu's kernels against lax, value and gradient, case by case


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


class ConvTransposeTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(((2, 2), "SAME"), ((1, 1), "SAME"), ((2, 2), "VALID"), ((2, 1), ((1, 2), (0, 1))))
  def test_values_and_gradients_equal_lax(self, strides, padding):
    with jax.enable_x64(True):
      kx, kk, kg = jax.random.split(jax.random.key(0), 3)
      x = jax.random.normal(kx, (3, 5, 6, 4), jnp.float64)
      kernel = jax.random.normal(kk, (4, 3, 4, 7), jnp.float64)
      plain = lambda x, k: jax.lax.conv_transpose(x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
      ours = lambda x, k: conv_transpose(x, k, strides, padding, jnp.float64)
      assert_values_and_gradients_equal(ours, plain, x, kernel, kg, self.variant)


def test_per_example_gradients_under_vmap_in_a_loop_equal_lax():
  """AIS's use: vmap over chains of the gradient of a one-example function, inside a scan."""
  kernel = jax.random.normal(jax.random.key(1), (4, 4, 3, 2), jnp.float64)
  zs = jax.random.normal(jax.random.key(2), (5, 7, 7, 3), jnp.float64)

  def make(op):
    f = lambda z: jnp.sum(jnp.sin(op(z[None], kernel)))
    def body(z, _):
      return z - 0.01 * jax.vmap(jax.grad(f))(z), None
    return jax.jit(lambda z: jax.lax.scan(body, z, None, length=3)[0])

  ours = make(lambda x, k: conv_transpose(x, k, (2, 2), "SAME", jnp.float64))
  plain = make(lambda x, k: jax.lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  np.testing.assert_allclose(ours(zs), plain(zs), rtol=1e-12, atol=1e-12)


def test_the_module_is_a_drop_in_for_flax():
  x = jax.random.normal(jax.random.key(3), (2, 7, 7, 8), jnp.float64)
  ours, theirs = ConvTranspose(16, (4, 4), strides=(2, 2)), nn.ConvTranspose(16, (4, 4), strides=(2, 2))
  params = theirs.init(jax.random.key(4), x)
  chex.assert_trees_all_equal_shapes_and_dtypes(ours.init(jax.random.key(4), x), params)
  with jax.default_matmul_precision("highest"):   # GPUs default float32 products to TF32
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6, atol=1e-6)
  bf16 = ConvTranspose(16, (4, 4), strides=(2, 2), dtype=jnp.bfloat16).apply(params, x.astype(jnp.float32))
  assert bf16.dtype == jnp.float32
  np.testing.assert_allclose(bf16, theirs.apply(params, x), rtol=0.05, atol=0.05)
