"""genfam.cpu.matmul_conv.Conv: flax.linen.Conv's parameters and outputs, by XLA or as a matmul."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.errors import GenfamError
from genfam.cpu.matmul_conv import Conv

pytestmark = pytest.mark.slow  # genfam/cpu's kernels against lax, value and gradient, case by case

CASES = [((3, 3), (1, 1), "SAME"), ((3, 3), (2, 2), "SAME"), ((4, 4), (2, 2), "SAME"), ((1, 1), (1, 1), "SAME"),
         ((1, 1), (1, 1), "VALID"), ((3, 3), (1, 1), "VALID"), ((3, 3), (2, 2), "VALID")]


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("kernel_size,strides,padding", CASES)
@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_same_parameters_outputs_and_gradients_as_flax_conv(kernel_size, strides, padding, impl):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6, 3), jnp.float64)
  ref = nn.Conv(5, kernel_size, strides=strides, padding=padding, param_dtype=jnp.float64)
  ours = Conv(5, kernel_size, strides=strides, padding=padding, impl=impl, dtype=jnp.float64)
  params = ref.init(jax.random.PRNGKey(1), x)
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape, p.dtype), params)
  chex.assert_trees_all_equal_shapes(params, jax.tree.map(lambda p: p.astype(jnp.float64),
                                                          ours.init(jax.random.PRNGKey(1), x)))
  for jit in (False, True):
    f = (lambda m: jax.jit(m.apply) if jit else m.apply)
    np.testing.assert_allclose(f(ours)(params, x), f(ref)(params, x), rtol=1e-12, atol=1e-12)
  loss = lambda m: (lambda p, x: jnp.sum(jnp.sin(m.apply(p, x))))
  g_ours, g_ref = jax.grad(loss(ours), argnums=(0, 1))(params, x), jax.grad(loss(ref), argnums=(0, 1))(params, x)
  chex.assert_trees_all_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def test_bfloat16_products_stay_close_and_return_float32():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 16))
  params = nn.Conv(32, (3, 3)).init(jax.random.PRNGKey(1), x)
  want = nn.Conv(32, (3, 3)).apply(params, x)
  for impl in ("xla", "matmul"):
    got = Conv(32, (3, 3), dtype=jnp.bfloat16, impl=impl).apply(params, x)
    assert got.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want))) < 2e-2


def test_an_unknown_impl_is_named():
  with pytest.raises(GenfamError, match="unknown convolution impl 'fast'"):
    Conv(4, (3, 3), impl="fast").init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 2)))


def test_the_auto_name_matches_flax_conv_so_checkpoints_carry_over():
  class Two(nn.Module):
    cls: type

    @nn.compact
    def __call__(self, x):
      return self.cls(4, (3, 3))(self.cls(4, (3, 3))(x))

  x = jnp.zeros((1, 4, 4, 2))
  assert jax.tree.structure(Two(nn.Conv).init(jax.random.PRNGKey(0), x)) == \
      jax.tree.structure(Two(Conv).init(jax.random.PRNGKey(0), x))
