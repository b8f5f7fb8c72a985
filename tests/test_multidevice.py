"""The same few steps on 8 fake CPU devices and on 1 device agree.

Each device count is a subprocess, because the device count is fixed when JAX starts
(XLA_FLAGS=--xla_force_host_platform_device_count=8); one process per count trains
every config (tests/parity_worker.py). The batch is sharded over the `data` axis;
random draws are sharding-independent because genfam pins jax_threefry_partitionable.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multidevice")]   # one worker runs both processes

CONFIGS = ["independent", "glow", "realnvp", "vae", "igpt"]


def _run(devices, root):
  out = root / f"devices_{devices}"
  out.mkdir()
  # XLA's own code generation (the suite's cheap compilation, tests/conftest.py, is named off), the
  # one users train with: under XLA:CPU's elemental fusion emitters one RealNVP weight of 144 differs
  # by 2e-5 of itself after the 4 steps (5e-7 absolute), reductions summed in another order.
  flags = (f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=3 "
           "--xla_cpu_use_fusion_emitters=true")
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "parity_worker.py"), ",".join(CONFIGS),
                         str(out / "runs"), str(out), "4"], cwd=REPO, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{devices: the folder of each config's npz}, trained once for every config."""
  root = tmp_path_factory.mktemp("multidevice")
  return {devices: _run(devices, root) for devices in (1, 8)}


@pytest.mark.parametrize("name", CONFIGS)
def test_eight_devices_match_one(name, runs):
  one, eight = np.load(runs[1] / f"{name}.npz"), np.load(runs[8] / f"{name}.npz")
  assert int(one["devices"]) == 1 and int(eight["devices"]) == 8
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=1e-6)
  for key in one.files:
    if key not in ("losses", "devices"):
      np.testing.assert_allclose(eight[key], one[key], rtol=1e-5, atol=1e-7, err_msg=key)
