"""Properties every bijector must have, each with and without jit.

For every layer in genfam.bijectors (at a generic, perturbed parameter point):
  * inverse(forward(x)) == x (float32 atol 1e-4, float64 atol 1e-5);
  * forward log-det == log|det| of the dense Jacobian (float64, rtol 1e-5),
    and the same for the inverse at y = f(x);
  * inverse log-det at y = f(x) == -forward log-det at x;
  * a batched call equals per-example calls;
  * outputs and log-dets stay finite at extreme inputs.
Inputs come from numpy and keys are 'rbg' keys: on CPU, XLA compiles the
partitionable threefry generator slowly, and these tests only need some numbers.
Cases are few and tiny because XLA compile time dominates; LU identity init and
sign flips have their own tests (test_conv1x1.py), checkerboard parity 0 and
the real conditioner networks are covered by the whole flows (test_flow_models.py).
"""
import functools

from absl.testing import parameterized
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genfam.bijectors import (ActNorm, AffineCoupling, Chain, ConditionalAffine, Conv1x1, Logit,
                              LUConv1x1, Scaling, Squeeze)
from genfam.bijectors import testing as bt
from genfam.bijectors.coupling import transformed_channels

B, H, W = 3, 4, 4


def key(seed):
  return jax.random.key(seed, impl="rbg")


def normal(seed, shape, scale=1.0, loc=0.0):
  return loc + scale * np.random.default_rng(seed).standard_normal(shape)


def uniform(seed, shape):
  return np.random.default_rng(seed).uniform(size=shape)


def coupling(mask, parity, scale_fn, c, **kwargs):
  # Any function of the kept part will do; one 3x3 conv sees neighbouring pixels (so a
  # wrong mask would show in the Jacobian) and compiles fast. The real conditioners
  # (GlowConditioner, ResNet) are exercised by the whole-flow tests.
  conditioner = nn.Conv(2 * transformed_channels(mask, parity, c), (3, 3))
  return AffineCoupling(conditioner, mask=mask, parity=parity, scale_fn=scale_fn, **kwargs)


# name -> (bijector, x [B, H, W, C] as numpy, conditioning kwargs: numpy arrays, batch first)
CASES = {
    "coupling_channel_sigmoid": lambda: (coupling("channel", 0, "sigmoid", 3), normal(0, (B, H, W, 3)), {}),
    "coupling_channel_tanh_parity1": lambda: (coupling("channel", 1, "tanh", 3), normal(1, (B, H, W, 3)), {}),
    "coupling_channel_softclamp": lambda: (coupling("channel", 0, "softclamp", 3, max_log_scale=0.7),
                                           normal(3, (B, H, W, 3)), {}),
    "coupling_checkerboard_tanh_parity1": lambda: (
        coupling("checkerboard", 1, "tanh", 2), normal(2, (B, H, W, 2)), {}),
    "actnorm": lambda: (ActNorm(), normal(4, (B, H, W, 3), 3.0, 2.0), {}),
    "conv1x1": lambda: (Conv1x1(), normal(5, (B, H, W, 3)), {}),
    "lu_conv1x1": lambda: (LUConv1x1(), normal(6, (B, H, W, 4)), {}),
    "squeeze": lambda: (Squeeze(), normal(8, (B, H, W, 2)), {}),
    "logit": lambda: (Logit(alpha=0.05), uniform(9, (B, H, W, 2)), {}),
    "scaling": lambda: (Scaling(scale=2.0, shift=-0.5), uniform(10, (B, H, W, 2)), {}),
    "conditional_affine_split": lambda: (ConditionalAffine(), normal(11, (B, H, W, 2)),
                                         {"h": normal(12, (B, H, W, 3))}),
    "conditional_affine_top_label": lambda: (ConditionalAffine(num_classes=5), normal(13, (B, H, W, 2)),
                                             {"label": np.array([0, 3, 4], np.int32)}),
    "chain": lambda: (Chain([Scaling(scale=2.0, shift=-0.5), Squeeze(), ActNorm()]),
                      uniform(14, (B, H, W, 2)), {}),
}
NAMES = [(name, name) for name in CASES]


def extreme_inputs(name, x):
  """Inputs at the edge of each layer's domain: 0 and 1 for [0, 1] maps, huge values otherwise."""
  if name in ("logit", "scaling", "chain"):
    return [jnp.zeros_like(x), jnp.ones_like(x), jnp.full_like(x, 1.0 - 1e-7)]
  return [1e3 * x, jnp.full_like(x, 1e4), jnp.full_like(x, -1e4)]


def apply_fns(bijector):
  fwd = lambda v, x, cond: bijector.apply(v, x, method=bijector.forward_and_log_det, **cond)
  inv = lambda v, y, cond: bijector.apply(v, y, method=bijector.inverse_and_log_det, **cond)
  return fwd, inv


def roundtrip_fn(bijector):
  """(variables, x, cond) -> (y, forward log-det, inverse(y), inverse log-det): one program."""
  fwd, inv = apply_fns(bijector)

  def roundtrip(variables, x, cond):
    y, log_det = fwd(variables, x, cond)
    return (y, log_det) + inv(variables, y, cond)

  return roundtrip


@functools.lru_cache(maxsize=None)
def build(name, dtype_name):
  """(bijector, variables, x, cond), initialised on x and perturbed; cached per case and dtype.

  The float64 build is the float32 one cast to float64 (one init per case). The float32 one is
  built in float32 mode whoever asks first: a float64 test asks from inside jax.enable_x64, where
  the initializers' default dtype is float64, and the cache would hand a later float32 test
  float64 parameters (the full suite runs the eager float64 tests first).
  """
  bijector, x, cond = CASES[name]()
  if dtype_name == "float32":
    with jax.enable_x64(False):
      init = jax.jit(functools.partial(bt.init, bijector, **bt.cast(cond, np.float32)))
      variables = bt.perturb(init(key(100), bt.cast(x, np.float32)), 101)
  else:
    variables = bt.cast(build(name, "float32")[1], np.dtype(dtype_name))
  return bijector, variables, bt.cast(x, np.dtype(dtype_name)), bt.cast(cond, np.dtype(dtype_name))


@functools.lru_cache(maxsize=None)
def float64_reference(name):
  """log|det| of the dense Jacobians of forward at x[0] and of inverse at f(x)[0], float64."""
  bijector, variables, x, cond = build(name, "float64")
  fwd, inv = apply_fns(bijector)
  cond0 = jax.tree.map(lambda a: a[:1], cond)

  @jax.jit
  def reference(x0):
    y0 = fwd(variables, x0, cond0)[0]
    fwd_ld = bt.jacobian_log_det(lambda v: fwd(variables, v, cond0)[0], x0)[1]
    inv_ld = bt.jacobian_log_det(lambda v: inv(variables, v, cond0)[0], y0)[1]
    return fwd_ld, inv_ld

  return reference(x[:1])


class BijectorPropertiesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*NAMES)
  def test_float32_inverse_batching_and_extremes(self, name):
    bijector, variables, x, cond = build(name, "float32")
    roundtrip = self.variant(roundtrip_fn(bijector))
    y, log_det, x_back, inv_log_det = out = roundtrip(variables, x, cond)
    chex.assert_shape(log_det, (x.shape[0],))
    np.testing.assert_allclose(x_back, x, atol=1e-4, rtol=0)
    np.testing.assert_allclose(inv_log_det, -log_det, rtol=1e-5, atol=1e-4)
    # batched == per example (forward and inverse)
    for i in range(x.shape[0]):
      out_i = roundtrip(variables, x[i:i + 1], jax.tree.map(lambda a: a[i:i + 1], cond))
      chex.assert_trees_all_close(out_i, tuple(a[i:i + 1] for a in out), rtol=1e-5, atol=1e-5)
    # finite at extreme inputs, both ways
    for x_ext in extreme_inputs(name, x):
      chex.assert_tree_all_finite(roundtrip(variables, x_ext, cond))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*NAMES)
  def test_float64_inverse_and_jacobian_log_det(self, name):
    with jax.enable_x64(True):
      bijector, variables, x, cond = build(name, "float64")
      y, log_det, x_back, inv_log_det = self.variant(roundtrip_fn(bijector))(variables, x, cond)
      self.assertEqual(y.dtype, jnp.float64)
      np.testing.assert_allclose(x_back, x, atol=1e-5, rtol=0)
      np.testing.assert_allclose(inv_log_det, -log_det, rtol=1e-6, atol=1e-8)
      ref_fwd, ref_inv = float64_reference(name)
      np.testing.assert_allclose(log_det[0], ref_fwd, rtol=1e-5, atol=1e-8)
      np.testing.assert_allclose(inv_log_det[0], ref_inv, rtol=1e-5, atol=1e-8)


class SqueezeTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_squeeze_layout(self):
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    y, log_det = self.variant(functools.partial(Squeeze().apply, {}, method="forward_and_log_det"))(x)
    chex.assert_shape(y, (2, 2, 2, 12))
    np.testing.assert_array_equal(log_det, np.zeros(2))
    # channel (2 i + j) C + c of pixel (h, w) is input pixel (2h + i, 2w + j), channel c
    np.testing.assert_array_equal(y[1, 1, 0, (2 * 1 + 0) * 3 + 2], x[1, 3, 0, 2])
    np.testing.assert_array_equal(y[0, 0, 1, (2 * 0 + 1) * 3 + 1], x[0, 0, 3, 1])


class LogitTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_values_at_the_ends_and_huge_inverse_inputs(self):
    a = 0.05
    logit = Logit(alpha=a)
    x = jnp.array([[0.0, 0.5, 1.0]])
    y, log_det = self.variant(functools.partial(logit.apply, {}, method="forward_and_log_det"))(x)
    np.testing.assert_allclose(y[0], [np.log(a / (1 - a)), 0.0, np.log((1 - a) / a)], rtol=1e-5, atol=1e-5)
    chex.assert_tree_all_finite(log_det)
    inv = self.variant(functools.partial(logit.apply, {}, method="inverse_and_log_det"))
    chex.assert_tree_all_finite(inv(jnp.array([[-1e4, 1e4, 0.0]])))
