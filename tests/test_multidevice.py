"""The same few steps on 8 fake CPU devices and on 1 device agree.

Each run is a subprocess, because the device count is fixed when JAX starts
(XLA_FLAGS=--xla_force_host_platform_device_count=8). The batch is sharded
over the `data` axis; random draws are sharding-independent because
genfam pins jax_threefry_partitionable.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

CONFIGS = ["independent", "glow", "realnvp", "vae", "igpt"]


def _run(name, devices, tmp_path):
  out = tmp_path / f"{name}_{devices}.npz"
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "parity_worker.py"), name,
                         str(tmp_path / f"run_{name}_{devices}"), str(out), "4"],
                        cwd=REPO, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return np.load(out)


@pytest.mark.parametrize("name", CONFIGS)
def test_eight_devices_match_one(name, tmp_path):
  one, eight = _run(name, 1, tmp_path), _run(name, 8, tmp_path)
  assert int(one["devices"]) == 1 and int(eight["devices"]) == 8
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=1e-6)
  for key in one.files:
    if key not in ("losses", "devices"):
      np.testing.assert_allclose(eight[key], one[key], rtol=1e-5, atol=1e-7, err_msg=key)
