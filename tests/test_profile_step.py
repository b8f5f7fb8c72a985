"""experiments.probes.profile_step: HLO operations mapped to what they compute, and a traced smoke step."""
import jax
import jax.numpy as jnp
import pytest

from experiments.benchmarks import benchmark_speed
from experiments.probes import profile_step


@pytest.fixture(scope="module")
def conv_net_hlo():
  """The optimized HLO of a tiny conv net's loss gradient (a forward, an input-gradient and a
  weight-gradient convolution, a dot, a reduction and random bits)."""
  def loss(params, x, key):
    h = jax.lax.conv_general_dilated(x, params["k"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    h = jax.nn.relu(h + jax.random.normal(key, h.shape))
    return jnp.sum((h.reshape(h.shape[0], -1) @ params["w"]) ** 2)

  params = {"k": jnp.ones((3, 3, 4, 8)), "w": jnp.ones((8 * 8 * 8, 5))}
  grad = jax.jit(jax.grad(loss))
  return grad.lower(params, jnp.ones((2, 8, 8, 4)), jax.random.key(0)).compile().as_text()


def test_every_executed_operation_gets_a_category(conv_net_hlo):
  instructions, contents = profile_step.parse_hlo(conv_net_hlo)
  entry = [n for n, (op, _, _) in instructions.items() if op not in ("parameter", "constant")]
  cats = {profile_step.category(n, instructions, contents) for n in entry}
  assert {"conv (forward)", "conv (backward)"} <= cats            # the loss's conv and its gradients
  assert any(c and c.startswith("matmul") for c in cats)
  assert profile_step.category("not-an-hlo-op", instructions, contents) is None


@pytest.mark.slow
def test_a_traced_smoke_step_accounts_for_its_time():
  r = profile_step.profile(benchmark_speed.load_entry("vae:smoke"), steps=2)
  assert r["op_ms_per_step"] > 0 and r["wall_ms_per_step"] > 0
  assert abs(sum(r["share"].values()) - 1) < 1e-9
  assert any(k.startswith("conv") for k in r["share"]) and r["top_ops"]
  assert "| vae:smoke |" in profile_step.markdown({"vae:smoke": r})
