"""train.cpu_devices: genfam.main splits the CPU backend into data-parallel devices
before JAX starts (genfam/cpu/xla_cpu.py), a run resumes under another split, and
XLA_FLAGS' own device count wins over the config."""
import json
import os
import subprocess
import sys

import pytest

from genfam.errors import GenfamError
from genfam.cpu.xla_cpu import cpu_device_count
from tests.conftest import REPO


@pytest.mark.parametrize("requested, batch, cores, expected", [
    (1, 64, 2, 1), (3, 64, 2, 3),          # an explicit count is taken as it is
    (0, 64, 2, 2), (0, 64, 1, 1),          # 0: one per usable core
    (0, 64, 3, 2), (0, 48, 8, 6), (0, 7, 2, 1),  # ... lowered to divide the batch
    (0, 64, 64, 8), (0, 12, 8, 1), (0, 16, 2, 2),  # ... into parts of at least 8 rows
])
def test_device_count(requested, batch, cores, expected):
  assert cpu_device_count(requested, batch, cores) == expected


def test_a_negative_count_is_refused_with_the_fix():
  with pytest.raises(GenfamError, match="use 0 .* or a count >= 1"):
    cpu_device_count(-1, 64, 2)


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return dict(env, JAX_PLATFORMS="cpu", **extra)


def _main(workdir, *overrides):
  proc = subprocess.run([sys.executable, "-m", "genfam.main", "--config=configs/vae.py:smoke", f"--workdir={workdir}",
                         "--config.train.progress=False", "--config.eval.num_examples=16", *overrides],
                        cwd=REPO, env=_env(), capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "results.json")) as f:
    return proc.stdout, json.load(f)


YNN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


@pytest.mark.slow
def test_main_trains_on_two_cpu_devices_and_resumes_on_one(tmp_path):
  """Also train.xla_cpu_flags: a flag this jaxlib knows is set; an unknown one (XLA would abort
  the process) is left out with a one-line warning, and the run goes on."""
  out, results = _main(tmp_path, "--config.train.num_steps=2", "--config.train.cpu_devices=2",
                       f"--config.train.xla_cpu_flags={YNN}")
  assert "CPU: 2 data-parallel devices (train.cpu_devices=2" in out
  assert f"XLA:CPU flags: {YNN} (train.xla_cpu_flags)" in out
  assert results["devices"] == 2 and results["step"] == 2
  out, results = _main(tmp_path, "--config.train.num_steps=4", "--config.train.cpu_devices=1",
                       "--config.train.xla_cpu_flags=--xla_cpu_no_such_flag=1")
  assert "resumed from step 2" in out and "data-parallel devices" not in out
  assert ("warning: train.xla_cpu_flags='--xla_cpu_no_such_flag=1' left out: this jaxlib does not start "
          "with them") in out and "XLA:CPU flags" not in out
  assert results["devices"] == 1 and results["step"] == 4


@pytest.mark.slow
def test_the_xla_flag_decides_over_the_config():
  code = ("import jax; from genfam.cpu.xla_cpu import set_cpu_devices; "
          "print(set_cpu_devices(2, 64), jax.device_count())")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=3"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ["None", "3"]


BATCH_RESULTS_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from genfam.evaluation.evaluate import batch_results
from genfam import sharding
assert jax.device_count() == 3
mesh = sharding.data_mesh()
params = {"w": jax.device_put(jnp.float32(2.0), sharding.replicated(mesh))}
fn = lambda p, b, key: {"bpd": p["w"] * b["image"].sum(axis=1) + jax.random.normal(key, (b["image"].shape[0],))}
rng = jax.random.key(7)
batches = [({"image": np.full((6, 4), i, np.float32)}, np.arange(6) < 6 - (i == 4)) for i in range(5)]
got = list(batch_results(fn, params, iter(batches), rng, mesh, num_draws=2))
assert len(got) == 5
for i, (mask, draws) in enumerate(got):
  np.testing.assert_array_equal(mask, batches[i][1])
  for d, draw in enumerate(draws):
    key = jax.random.fold_in(jax.random.fold_in(rng, i), d)
    want = jax.jit(fn)({"w": jnp.float32(2.0)}, {"image": jnp.asarray(batches[i][0]["image"])}, key)["bpd"]
    np.testing.assert_array_equal(draw["bpd"], np.asarray(want))
print("ok")
"""


@pytest.mark.slow
def test_batches_run_whole_on_alternate_cpu_devices_with_the_one_device_values():
  """evaluate.batch_results on 3 CPU devices: batch i on device i mod 3, results in order, each
  draw's values equal to one device's (same key fold_in(fold_in(rng, i), d)), masks kept."""
  proc = subprocess.run([sys.executable, "-c", BATCH_RESULTS_CHECK], cwd=REPO, capture_output=True, text=True,
                        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=3"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split()[-1] == "ok"
