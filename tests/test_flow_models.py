"""The whole RealNVP and Glow flows as one bijector x [B, H, W, C] -> eps [B, D].

Same properties as every layer (tests/test_bijectors.py), on tiny 8x8x1 models:
inverse(forward(x)) == x, the log-det equals slogdet of the dense 64 x 64
Jacobian of the whole map in float64, inverse log-det == -forward log-det,
batched == per example, finite at the ends of [0, 1]; plus the log-det parts
and the shapes at 28x28x1 and 32x32x3.
"""
import functools

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from genfam.bijectors import testing as bt
from genfam.families.flow_models import Glow, RealNVP, gaussian_log_prob

SHAPE = (8, 8, 1)
# Tiny, but every structural piece: two squeezes, splits with learned priors,
# a class-conditional top, LU 1x1 convs (Glow); checkerboard and channel
# couplings, logit preprocessing and a plain N(0, I) factor-out (RealNVP).
# Plain 1x1 convs, tanh / sigmoid scales and the conditioner networks are
# covered layer by layer in test_bijectors.py.
CASES = {
    "glow": lambda: Glow(image_shape=SHAPE, num_levels=2, num_steps=1, width=4, lu=True, num_classes=3),
    "realnvp": lambda: RealNVP(image_shape=SHAPE, num_levels=1, couplings=(1, 1, 2), width=4, num_blocks=0),
    # residual blocks with group norm inside the conditioners (the default is layer norm)
    "realnvp_groupnorm": lambda: RealNVP(image_shape=SHAPE, num_levels=1, couplings=(1, 0, 1), width=4,
                                         num_blocks=1, norm="group"),
}
NAMES = [(n, n) for n in CASES]


def batch(dtype=np.float32, n=3):
  x = np.random.default_rng(0).uniform(size=(n,) + SHAPE)
  return bt.cast(x, dtype), jnp.array([0, 2, 1][:n], jnp.int32)


@functools.lru_cache(maxsize=None)
def build(name, dtype_name="float32"):
  """(model, variables): actnorm initialised on a batch, params perturbed; float64 = cast of float32."""
  model = CASES[name]()
  if dtype_name == "float64":
    return model, bt.cast(build(name)[1], np.float64)
  x, label = batch()
  variables = jax.jit(functools.partial(model.init, method=model.forward_and_log_det))(
      jax.random.key(0, impl="rbg"), x, label)
  return model, bt.perturb(variables, 1, 0.05)


def label_kwargs(model, label):
  return {"label": label} if model.num_classes else {}


def roundtrip_fn(model):
  """(variables, x, label) -> (eps, log-det parts, inverse(eps), inverse log-det): one program."""
  def roundtrip(variables, x, label):
    kw = label_kwargs(model, label)
    eps, parts = model.apply(variables, x, method=model.forward_and_log_det_parts, **kw)
    return (eps, parts) + model.apply(variables, eps, method=model.inverse_and_log_det, **kw)
  return roundtrip


@functools.lru_cache(maxsize=None)
def float64_reference(name):
  """log|det| of the dense 64 x 64 Jacobian of x[0] -> eps[0], float64."""
  model, variables = build(name, "float64")
  x, label = batch(np.float64)
  kw = label_kwargs(model, label[:1])
  fwd = lambda v: model.apply(variables, v, method=model.forward_and_log_det, **kw)[0]
  return jax.jit(lambda x0: bt.jacobian_log_det(fwd, x0)[1])(x[:1])


def total(parts):
  return parts["preprocess"] + parts["flow"] + parts["prior"]


class FlowModelTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*NAMES)
  def test_float32_inverse_batching_and_extremes(self, name):
    model, variables = build(name)
    x, label = batch()
    roundtrip = self.variant(roundtrip_fn(model))
    eps, parts, x_back, inv_log_det = out = roundtrip(variables, x, label)
    chex.assert_shape((eps, total(parts)), [(3, 64), (3,)])
    np.testing.assert_allclose(x_back, x, atol=1e-4, rtol=0)
    np.testing.assert_allclose(inv_log_det, -total(parts), rtol=1e-5)
    for i in range(3):  # batched == per example
      out_i = roundtrip(variables, x[i:i + 1], label[i:i + 1])
      chex.assert_trees_all_close(out_i, jax.tree.map(lambda a: a[i:i + 1], out), rtol=1e-5, atol=1e-4)
    for x_ext in (jnp.zeros_like(x), jnp.full_like(x, 1.0 - 1e-7)):
      chex.assert_tree_all_finite(roundtrip(variables, x_ext, label))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*NAMES)
  def test_float64_inverse_and_jacobian_log_det(self, name):
    with jax.enable_x64(True):
      model, variables = build(name, "float64")
      x, label = batch(np.float64)
      eps, parts, x_back, inv_log_det = self.variant(roundtrip_fn(model))(variables, x, label)
      self.assertEqual(eps.dtype, jnp.float64)
      np.testing.assert_allclose(x_back, x, atol=1e-5, rtol=0)
      np.testing.assert_allclose(inv_log_det, -total(parts), rtol=1e-6)
      np.testing.assert_allclose(total(parts)[0], float64_reference(name), rtol=1e-5)

  def test_log_prob_parts_add_up(self):
    model, variables = build("glow")
    x, label = batch()
    parts = model.apply(variables, x, label, method=model.log_prob_parts)
    eps, log_det = model.apply(variables, x, label, method=model.forward_and_log_det)
    self.assertEqual(set(parts), {"gaussian", "prior", "flow", "preprocess"})
    np.testing.assert_allclose(total(parts), log_det, rtol=1e-5)
    np.testing.assert_allclose(parts["gaussian"], gaussian_log_prob(eps), rtol=1e-5)
    self.assertTrue(np.all(np.asarray(parts["prior"]) != 0.0))  # the (perturbed) learned priors count


class FlowShapesTest(parameterized.TestCase):

  @parameterized.product(kind=["glow", "realnvp"], shape=[(28, 28, 1), (32, 32, 3)])
  def test_shapes_without_padding(self, kind, shape):
    model = (Glow(image_shape=shape, num_levels=2, num_steps=1, width=4) if kind == "glow"   # (one coupling of
             else RealNVP(image_shape=shape, num_levels=2, couplings=(1, 1, 1), width=4))   # each kind: traced)
    x = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)
    variables = jax.eval_shape(functools.partial(model.init, method=model.forward_and_log_det),
                               jax.random.key(0), x)
    forward = functools.partial(model.apply, method=model.forward_and_log_det)
    inverse = functools.partial(model.apply, method=model.inverse_and_log_det)
    eps, log_det = jax.eval_shape(forward, variables, x)
    d = int(np.prod(shape))
    self.assertEqual((eps.shape, log_det.shape), ((2, d), (2,)))
    x_back, _ = jax.eval_shape(inverse, variables, eps)
    self.assertEqual(x_back.shape, (2,) + shape)

  def test_too_many_levels_is_a_clear_error(self):
    with self.assertRaisesRegex(ValueError, "cannot be squeezed 3 times"):
      Glow(image_shape=(28, 28, 1), num_levels=3).shapes()

  def test_glow_28x28_latent_layout(self):
    _, splits, top = Glow(image_shape=(28, 28, 1), num_levels=2).shapes()
    self.assertEqual((splits, top), ([(14, 14, 2)], (7, 7, 8)))
    _, splits, top = RealNVP(image_shape=(28, 28, 1), num_levels=2).shapes()
    self.assertEqual((splits, top), ([(14, 14, 2), (7, 7, 4)], (7, 7, 4)))
