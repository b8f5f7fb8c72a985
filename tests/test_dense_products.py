"""genfam.cpu.dense_products: lax.dot_general's values and gradients, with the kernel gradient
written as a chunked canonical product (known answers in float64, bfloat16 dtypes, sharding)."""
import os
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from genfam.cpu import dense_products
from genfam.nets import transformer
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # genfam/cpu's kernels against lax, value and gradient, case by case

# (lhs shape, rhs shape, dimension numbers): Dense, DenseGeneral onto (3, H, Dh), DenseGeneral over
# axis=(-2, -1), a plain matrix product; rows M = 48 (8 chunks), 20 (4), 6 (2), 7 (no chunks)
DENSE = [((2, 24, 5), (5, 3), (((2,), (0,)), ((), ()))),
         ((4, 5, 8), (8, 3, 2, 4), (((2,), (0,)), ((), ()))),
         ((3, 2, 2, 4), (2, 4, 6), (((2, 3), (0, 1)), ((), ()))),
         ((7, 9), (9, 4), (((1,), (0,)), ((), ())))]


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def _operands(lhs_shape, rhs_shape, dtype=jnp.float64):
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  return jax.random.normal(k1, lhs_shape, dtype), jax.random.normal(k2, rhs_shape, dtype)


class DotGeneralTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_values_and_gradients_equal_lax_in_float64(self):
    for lhs_shape, rhs_shape, dims in DENSE:
      x, w = _operands(lhs_shape, rhs_shape)
      def loss(dot):
        return lambda x, w: jnp.sum(jnp.sin(dot(x, w, dims)))
      ours = self.variant(jax.value_and_grad(loss(dense_products.dot_general), argnums=(0, 1)))(x, w)
      ref = jax.value_and_grad(loss(lax.dot_general), argnums=(0, 1))(x, w)
      chex.assert_trees_all_close(ours, ref, rtol=1e-12, atol=1e-12)
      chex.assert_trees_all_equal_dtypes(ours, ref)

  def test_other_dimension_numbers_go_to_lax_unchanged(self):
    x, w = _operands((3, 4, 5), (3, 5, 2))
    batched = (((2,), (1,)), ((0,), (0,)))
    np.testing.assert_array_equal(dense_products.dot_general(x, w, batched), lax.dot_general(x, w, batched))
    x, w = _operands((5, 4), (5, 3))
    leading = (((0,), (0,)), ((), ()))
    np.testing.assert_array_equal(dense_products.dot_general(x, w, leading), lax.dot_general(x, w, leading))

  def test_bfloat16_products_return_bfloat16_near_the_exact_product(self):
    x, w = _operands((16, 8), (8, 6))
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    dims = (((1,), (0,)), ((), ()))
    y, vjp = jax.vjp(lambda x, w: dense_products.dot_general(x, w, dims), xb, wb)
    g = jnp.cos(y.astype(jnp.float64)).astype(jnp.bfloat16)
    dx, dw = vjp(g)
    assert y.dtype == dx.dtype == dw.dtype == jnp.bfloat16
    # exact products of the same bf16 operands, in float64
    x64, w64, g64 = (a.astype(jnp.float64) for a in (xb, wb, g))
    np.testing.assert_allclose(y.astype(jnp.float64), x64 @ w64, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(dx.astype(jnp.float64), g64 @ w64.T, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(dw.astype(jnp.float64), x64.T @ g64, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("units", [True, False])
def test_used_for_bfloat16_on_a_cpu_with_bf16_matrix_units_only(units, monkeypatch):
  assert jax.default_backend() == "cpu"
  monkeypatch.setattr(dense_products, "bf16_matrix_units", lambda: units)
  assert dense_products.for_dtype(jnp.bfloat16) is (dense_products.dot_general if units else None)
  assert dense_products.for_dtype(jnp.float32) is None and dense_products.for_dtype(jnp.float64) is None


def test_cpu_flags_are_read():
  assert isinstance(dense_products.bf16_matrix_units(), bool)


def test_the_bfloat16_transformer_matches_flax_default_products(monkeypatch):
  """The image-GPT network in bfloat16: the same parameters, logits and gradients (to bf16
  rounding of differently ordered sums) with and without this module's products."""
  net = transformer.Transformer(num_tokens=16, seq_len=24, width=16, depth=2, num_heads=2, dtype=jnp.bfloat16,
                                query_block=8)
  tokens = jax.random.randint(jax.random.PRNGKey(0), (4, 24), 0, 16)
  monkeypatch.setattr(dense_products, "bf16_matrix_units", lambda: True)
  with jax.enable_x64(False):
    params = net.init(jax.random.PRNGKey(1), tokens)
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape, p.dtype), params)
    loss = lambda p: jnp.mean(nn.log_softmax(net.apply(p, tokens))[..., 0])  # noqa: E731
    ours = jax.jit(jax.value_and_grad(loss))(params)
    assert "custom_vjp_call" in str(jax.make_jaxpr(jax.grad(loss))(params))
    monkeypatch.setattr(dense_products, "for_dtype", lambda dtype: None)
    plain = jax.jit(jax.value_and_grad(loss))(params)
    assert "custom_vjp_call" not in str(jax.make_jaxpr(jax.grad(loss))(params))
  chex.assert_trees_all_equal_shapes_and_dtypes(ours, plain)
  chex.assert_trees_all_close(ours, plain, rtol=2e-2, atol=2e-3)


def test_a_batch_sharded_over_eight_devices_gives_the_same_gradients():
  """The chunked kernel gradient of rows sharded over 8 fake CPU devices (data parallelism)."""
  script = textwrap.dedent("""
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      from genfam.cpu import dense_products
      x = jax.random.normal(jax.random.PRNGKey(0), (64, 12))
      w = jax.random.normal(jax.random.PRNGKey(1), (12, 5))
      loss = lambda x, w: jnp.sum(jnp.sin(dense_products.matmul(x, w, jnp.dtype(jnp.float32))))
      grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
      mesh = Mesh(np.array(jax.devices()), ("data",))
      xs = jax.device_put(x, NamedSharding(mesh, P("data")))
      (dx1, dw1), (dx8, dw8) = grad(x, w), grad(xs, w)
      assert len(jax.devices()) == 8
      np.testing.assert_allclose(dx8, dx1, rtol=1e-6, atol=1e-6)
      np.testing.assert_allclose(dw8, dw1, rtol=1e-5, atol=1e-5)
      print("ok")
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
  assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
