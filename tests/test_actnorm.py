"""Actnorm: data-dependent initialisation, constant channels, save/restore."""
import functools
import os
import tempfile

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from genfam.bijectors import ActNorm


def init_batch(constant_channel=None):
  x = 1.5 + 2.0 * np.random.default_rng(0).standard_normal((8, 4, 4, 3)).astype(np.float32)
  if constant_channel is not None:
    x[..., constant_channel] = 0.7
  return jnp.asarray(x)


class ActNormTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_output_has_zero_mean_unit_std_per_channel_after_init(self):
    actnorm, x = ActNorm(), init_batch()
    init = self.variant(functools.partial(actnorm.init, method=actnorm.forward_and_log_det))
    variables = init(jax.random.key(0, impl="rbg"), x)
    fwd = self.variant(functools.partial(actnorm.apply, method=actnorm.forward_and_log_det))
    y, log_det = fwd(variables, x)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), np.zeros(3), atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), np.ones(3), atol=1e-5)
    # log-det = H W sum log_scale = -H W sum log std
    expected = -16 * np.sum(np.log(np.std(np.asarray(x), axis=(0, 1, 2))))
    np.testing.assert_allclose(log_det, np.full(8, expected), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_constant_channel_stays_finite(self):
    actnorm, x = ActNorm(), init_batch(constant_channel=1)
    init = self.variant(functools.partial(actnorm.init, method=actnorm.forward_and_log_det))
    variables = init(jax.random.key(0, impl="rbg"), x)
    chex.assert_tree_all_finite(variables)
    self.assertEqual(float(variables["params"]["log_scale"][1]), 0.0)  # scale 1, not 1/0
    fwd = self.variant(functools.partial(actnorm.apply, method=actnorm.forward_and_log_det))
    inv = self.variant(functools.partial(actnorm.apply, method=actnorm.inverse_and_log_det))
    y, log_det = fwd(variables, x)
    chex.assert_tree_all_finite((y, log_det))
    np.testing.assert_allclose(y[..., 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(jnp.std(y[..., 0]), 1.0, atol=1e-5)
    x_back, _ = inv(variables, y)
    np.testing.assert_allclose(x_back, x, atol=1e-5)

  def test_initialised_params_survive_save_and_restore(self):
    actnorm, x = ActNorm(), init_batch()
    variables = jax.jit(functools.partial(actnorm.init, method=actnorm.forward_and_log_det))(
        jax.random.key(0, impl="rbg"), x)
    fresh = jax.tree.map(jnp.zeros_like, variables)  # what a model without the data would hold
    # flax serialization round trip
    restored = flax.serialization.from_bytes(fresh, flax.serialization.to_bytes(variables))
    chex.assert_trees_all_equal(restored, variables)
    # orbax, as the training loop's checkpoints
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "ckpt")
      checkpointer = ocp.StandardCheckpointer()
      checkpointer.save(path, variables)
      checkpointer.wait_until_finished()
      restored = checkpointer.restore(path, fresh)
    chex.assert_trees_all_equal(restored, variables)
    y, _ = actnorm.apply(restored, x, method=actnorm.forward_and_log_det)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), np.ones(3), atol=1e-5)
