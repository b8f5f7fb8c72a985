"""Invertible 1x1 convolutions: orthogonal init, LU identity init, LU sign flips."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from genfam.bijectors import Conv1x1, LUConv1x1
from genfam.bijectors import testing as bt


def data(c=4, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal((2, 3, 3, c)), jnp.float32)


def key():
  return jax.random.key(0, impl="rbg")


class Conv1x1Test(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_plain_random_orthogonal_init_has_log_det_zero(self):
    conv, x = Conv1x1(), data()
    variables = conv.init(key(), x, method=conv.forward_and_log_det)
    w = variables["params"]["kernel"]
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-5)
    _, log_det = self.variant(functools.partial(conv.apply, method=conv.forward_and_log_det))(variables, x)
    np.testing.assert_allclose(log_det, np.zeros(2), atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_lu_identity_init_is_identity_with_log_det_zero(self):
    conv, x = LUConv1x1(identity_init=True), data()
    variables = conv.init(key(), x, method=conv.forward_and_log_det)
    y, log_det = self.variant(functools.partial(conv.apply, method=conv.forward_and_log_det))(variables, x)
    np.testing.assert_array_equal(log_det, np.zeros(2))
    np.testing.assert_allclose(y, x, atol=1e-7)

  def test_lu_random_init_is_orthogonal_and_constants_are_not_params(self):
    conv, x = LUConv1x1(), data()
    variables = conv.init(key(), x, method=conv.forward_and_log_det)
    self.assertEqual(set(variables["constants"]), {"perm", "sign_s"})
    self.assertNotIn("perm", variables["params"])
    w = conv.apply(variables, 4, method=conv.weight)
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_lu_invertible_after_flipping_the_sign_of_a_diagonal_entry(self):
    conv, x = LUConv1x1(), data()
    variables = conv.init(key(), x, method=conv.forward_and_log_det)
    variables = bt.perturb(variables, 1, 0.3)
    flipped = dict(variables, constants=dict(variables["constants"],
                                             sign_s=variables["constants"]["sign_s"].at[0].multiply(-1.0)))
    w0 = conv.apply(variables, 4, method=conv.weight)
    w1 = conv.apply(flipped, 4, method=conv.weight)
    self.assertLess(float(jnp.linalg.det(w0) * jnp.linalg.det(w1)), 0.0)  # the flip changed det's sign
    fwd = self.variant(functools.partial(conv.apply, method=conv.forward_and_log_det))
    inv = self.variant(functools.partial(conv.apply, method=conv.inverse_and_log_det))
    y, log_det = fwd(flipped, x)
    x_back, inv_log_det = inv(flipped, y)
    np.testing.assert_allclose(x_back, x, atol=1e-4)
    np.testing.assert_allclose(inv_log_det, -log_det, rtol=1e-6)
    # |det| does not depend on the sign: H W sum log_s = H W log|det W|
    np.testing.assert_allclose(log_det, fwd(variables, x)[1], rtol=1e-6)
    np.testing.assert_allclose(log_det[0], 9 * jnp.linalg.slogdet(w1)[1], rtol=1e-5)
