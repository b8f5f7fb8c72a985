"""Optimizer pieces: the EMA warm-up."""
import chex
import jax
import jax.numpy as jnp
import numpy as np

from genfam import optim


def test_ema_decay_warms_up_then_is_constant():
  n = jnp.array([0, 1, 8, 1799, 1800, 10 ** 6])
  np.testing.assert_allclose(optim.ema_decay_at(0.995, n), [0.1, 2 / 11, 0.5, 0.995, 0.995, 0.995], rtol=1e-6)


class EmaTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_ema_follows_the_applied_update_count(self):
    tx = optim.make_optimizer(0.1, warmup_steps=0)
    loss = lambda p, s, b, r: (jnp.sum((p["w"] - 1.0) ** 2), ({}, s))
    update = self.variant(optim.make_scalar_loss_update(loss, tx, 0.995))
    state = optim.scalar_loss_family_state({"w": jnp.zeros(3)}, tx, 0.995)
    new, _ = update(state, None, jax.random.key(0))
    # the first update: decay 1/10, so the average moves 90% of the way to the new weights
    chex.assert_trees_all_close(new.ema_params["w"], 0.1 * state.params["w"] + 0.9 * new.params["w"])
    newer, _ = update(new, None, jax.random.key(1))
    d = 2 / 11
    chex.assert_trees_all_close(newer.ema_params["w"], d * new.ema_params["w"] + (1 - d) * newer.params["w"])
    assert int(optim.applied_updates(newer.opt_state)) == 2
