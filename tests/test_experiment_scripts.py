"""experiments.mixed_precision and experiments.kernel_probe --phases / --pointwise / --conv_grads /
--dot_forms / --allreduce run end to end on tiny settings."""
import json
import subprocess

import jax
import numpy as np
import pytest

from experiments import kernel_probe, mixed_precision


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


@pytest.mark.parametrize("probe,layers", [("probe_phases", "PHASE_LAYERS"), ("probe_pointwise", "POINTWISE_LAYERS")])
def test_layer_probes_time_every_layer_both_ways(probe, layers):
  rows = getattr(kernel_probe, probe)(batch=2, reps=1)
  assert [r["layer"] for r in rows] == [layer[0] for layer in getattr(kernel_probe, layers)]
  assert all(r["lax_ms"] > 0 and r["other_ms"] > 0 for r in rows)


def test_conv_grads_probe_times_each_piece_of_every_layer():
  rows = kernel_probe.probe_conv_grads(batch=1, reps=1)
  assert [r["layer"] for r in rows] == [layer[0] for layer in kernel_probe.CONV_GRAD_LAYERS]
  assert all(r[f"{p}_ms"] > 0 and r[f"{p}_gflops_per_s"] > 0 for r in rows for p in ("forward", "input_grad", "kernel_grad"))


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


def test_the_allreduce_probe_times_both_forms_on_two_devices_and_refuses_one(tmp_path):
  import os
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out_path = tmp_path / "allreduce.json"
  command = [sys.executable, "-m", "experiments.kernel_probe", "--allreduce", "--arrays=4", "--floats=64", "--reps=1",
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


def test_dot_forms_probe_times_every_form_and_the_chunked_kernel_gradient_is_the_kernel_gradient():
  rows = kernel_probe.probe_dot_forms(reps=1, shapes=(("tiny", 48, 5, 3),))
  assert [(r["shape"], r["dtype"]) for r in rows] == [("tiny", "float32"), ("tiny", "bfloat16")]
  assert all(r[f"{f}_ms"] > 0 for r in rows for f in kernel_probe.DOT_FORMS)
  x, g = jax.random.normal(jax.random.PRNGKey(0), (48, 5)), jax.random.normal(jax.random.PRNGKey(1), (48, 3))
  for form in ("kernel_grad", "kernel_grad_chunked"):
    f, _ = kernel_probe.DOT_FORMS[form]
    np.testing.assert_allclose(f(x, None, g), x.T @ g, rtol=1e-5, atol=1e-5)
