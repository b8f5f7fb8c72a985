"""The one nats -> bits/dim conversion, on cases with known answers."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from genfam.likelihood import bits


def test_uniform_density_on_unit_cube_is_exactly_8_bits_per_dim():
  # A uniform density on [0, 1)^D has -log p(y) = 0 nats for every y.
  d = 28 * 28
  bpd = bits.continuous_nll_to_bpd(jnp.zeros((5,)), d, 256)
  np.testing.assert_array_equal(np.asarray(bpd), np.full((5,), 8.0, np.float32))


def test_uniform_density_with_17_bins_is_log2_17():
  bpd = bits.continuous_nll_to_bpd(jnp.zeros((3,)), 64, 17)
  np.testing.assert_allclose(np.asarray(bpd), math.log2(17), rtol=1e-6)


def test_nats_to_bpd_divides_by_d_log2():
  np.testing.assert_allclose(float(bits.nats_to_bpd(jnp.asarray(10 * math.log(2.0)), 10)), 1.0, rtol=1e-6)


def test_dequantize_lands_in_its_bin():
  image = jnp.arange(17, dtype=jnp.uint8).reshape(1, 17, 1, 1)
  y = bits.dequantize(jax.random.key(0, impl="rbg"), image, 17)
  assert float(y.min()) >= 0.0 and float(y.max()) < 1.0
  np.testing.assert_array_equal(np.floor(np.asarray(y) * 17).astype(np.uint8), np.asarray(image))
