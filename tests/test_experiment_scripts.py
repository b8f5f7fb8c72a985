"""experiments.benchmarks.mixed_precision and experiments.probes.kernel_probe --phases / --pointwise / --conv_grads /
--dot_forms / --allreduce run end to end on tiny settings."""
import json
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.benchmarks import mixed_precision
from experiments.probes import kernel_probe


@pytest.mark.slow
def test_mixed_precision_trains_both_dtypes_once_and_tabulates(tmp_path, monkeypatch):
  entry = "vae:smoke@train.num_steps=2"
  row = mixed_precision.run_entry(str(tmp_path), entry)
  for dtype in mixed_precision.DTYPES:
    config = json.load(open(f"{mixed_precision.run_dir(str(tmp_path), entry, dtype)}/config.json"))
    assert config["model"]["dtype"] == dtype and config["train"]["num_steps"] == 2
    assert row[dtype]["step"] == 2 and row[dtype]["kind"] == "elbo"
  assert row["difference"] == row["bfloat16"]["bpd"] - row["float32"]["bpd"]
  assert entry in mixed_precision.table([row])

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(subprocess, "run", no_training)
  assert mixed_precision.run_entry(str(tmp_path), entry) == row      # finished runs are only read


@pytest.mark.slow
@pytest.mark.parametrize("probe,layers", [("probe_phases", "PHASE_LAYERS"), ("probe_pointwise", "POINTWISE_LAYERS")])
def test_layer_probes_time_every_layer_both_ways(probe, layers):
  rows = getattr(kernel_probe, probe)(batch=2, reps=1)
  assert [r["layer"] for r in rows] == [layer[0] for layer in getattr(kernel_probe, layers)]
  assert all(r["lax_ms"] > 0 and r["other_ms"] > 0 for r in rows)


@pytest.mark.slow
def test_conv_grads_probe_times_each_piece_of_every_layer():
  rows = kernel_probe.probe_conv_grads(batch=1, reps=1)
  assert [r["layer"] for r in rows] == [layer[0] for layer in kernel_probe.CONV_GRAD_LAYERS]
  assert all(r[f"{p}_ms"] > 0 and r[f"{p}_gflops_per_s"] > 0 for r in rows for p in ("forward", "input_grad", "kernel_grad"))


@pytest.mark.slow
def test_the_readme_ynnpack_flag_is_known_to_this_jaxlib_and_keeps_the_gradient():
  """README ('Weight gradients and YNNPACK') advises this flag for the diffusion configs; an XLA
  that no longer knows it aborts the process, which this catches on upgrade."""
  import os
  import sys
  code = ("import jax, jax.numpy as jnp; from jax import lax; x = jnp.ones((2, 6, 6, 20)); k = jnp.ones((3, 3, 20, 20));"
          "f = lambda k: jnp.sum(lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')));"
          "print(float(jax.grad(f)(k)[1, 1, 0, 0]))")
  env = {**os.environ, "XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"}
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert float(out.stdout.strip().splitlines()[-1]) == 2 * 36.0     # 36 positions, 2 images, all taps inside


@pytest.mark.slow
def test_the_allreduce_probe_times_both_forms_on_two_devices_and_refuses_one(tmp_path):
  import os
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out_path = tmp_path / "allreduce.json"
  command = [sys.executable, "-m", "experiments.probes.kernel_probe", "--allreduce", "--arrays=4", "--floats=64", "--reps=1",
             f"--out={out_path}"]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  row = json.load(open(out_path))
  assert row["devices"] == 2 and row["arrays"] == 4 and row["floats_per_device"] == 64
  assert row["tuple_ms"] > 0 and row["one_array_ms"] > 0
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and "needs 2 or more devices" in proc.stderr


@pytest.mark.slow
def test_dot_forms_probe_times_every_form_and_the_chunked_kernel_gradient_is_the_kernel_gradient():
  rows = kernel_probe.probe_dot_forms(reps=1, shapes=(("tiny", 48, 5, 3),))
  assert [(r["shape"], r["dtype"]) for r in rows] == [("tiny", "float32"), ("tiny", "bfloat16")]
  assert all(r[f"{f}_ms"] > 0 for r in rows for f in kernel_probe.DOT_FORMS)
  x, g = jax.random.normal(jax.random.PRNGKey(0), (48, 5)), jax.random.normal(jax.random.PRNGKey(1), (48, 3))
  for form in ("kernel_grad", "kernel_grad_chunked"):
    f, _ = kernel_probe.DOT_FORMS[form]
    np.testing.assert_allclose(f(x, None, g), x.T @ g, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_attention_forms_probe_times_every_form_and_the_chunked_forms_equal_the_written_ones():
  rows = kernel_probe.probe_attention_forms(reps=1, shapes=(("tiny", 2, 3, 8, 12, 4),))
  assert [(r["shape"], r["dtype"]) for r in rows] == [("tiny", "float32"), ("tiny", "bfloat16")]
  for r in rows:
    for form in kernel_probe.ATTENTION_FORMS:
      assert r[f"{form}_ms"] > 0
      assert len(r[f"{form}_dot_operands"]) == 1                   # one compiled dot per product
  assert rows[0]["scores_dot_operands"] == ["f32 x f32"]
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  q, k = jax.random.normal(keys[0], (2, 3, 8, 4)), jax.random.normal(keys[1], (2, 3, 12, 4))
  s = jax.random.normal(keys[2], (2, 3, 8, 12))
  forms = {name: f for name, (f, _) in kernel_probe.ATTENTION_FORMS.items()}
  np.testing.assert_allclose(forms["scores_chunked"](q, k), np.einsum("bhqd,bhkd->bhqk", q, k), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(forms["transposed_chunked"](s, q), np.einsum("bhqk,bhqd->bhkd", s, q),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(forms["mix"](s, k), np.einsum("bhqk,bhkd->bhqd", s, k), rtol=1e-5, atol=1e-5)


def test_dot_operand_dtypes_reads_each_dot_of_optimized_hlo():
  f = jax.jit(lambda a, b, c: (jnp.dot(a, b), jnp.dot(c, c)))
  a, b = jnp.ones((8, 16)), jnp.ones((16, 8))
  with jax.enable_x64(True):
    c = jnp.ones((16, 16), jnp.float64)
    assert sorted(kernel_probe.dot_operand_dtypes(f.lower(a, b, c).compile().as_text())) == ["f32 x f32", "f64 x f64"]


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True])
def test_amx_attention_check_products_equal_blocked_attention_with_gradients(jit):
  """experiments/probes/igpt_step_probe.py's +chunked_attention mode computes the same attention and
  gradients as nets.transformer.blocked_causal_attention (float64, exact up to rounding)."""
  from experiments.probes import igpt_step_probe as igpt_step
  from genfam.nets import transformer
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    q, k, v, w = (jax.random.normal(key, (2, 12, 3, 8), jnp.float64) for key in keys)

    def loss(attention):
      return lambda q, k, v: jnp.sum(attention(q, k, v, None, 4) * w)
    grad = (jax.jit if jit else lambda f: f)(jax.value_and_grad(loss(igpt_step.chunked_blocked_attention), (0, 1, 2)))
    want = jax.value_and_grad(loss(transformer.blocked_causal_attention), (0, 1, 2))(q, k, v)
    got = grad(q, k, v)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
