"""`--mode=eval` through the command line on a trained digits workdir: the
printed report says that bits/dim counts 17 bins per pixel, not 256."""
import json
import os
import subprocess
import sys

import pytest

from genfam.loop import train
from tests.conftest import REPO, load_config

pytestmark = pytest.mark.slow  # the command line in a subprocess


def test_cli_eval_names_the_17_bins_of_digits(tmp_path):
  config = load_config("independent")  # digits: K = 17 grey levels
  config.train.num_steps = 2
  config.train.eval_every = 0
  train.train_and_evaluate(config, str(tmp_path))  # in-process: cheaper than a second CLI run
  out = subprocess.run([sys.executable, "-m", "genfam.main", "--config=configs/independent.py:smoke",
                        f"--workdir={tmp_path}", "--mode=eval"],
                       cwd=REPO, env=dict(os.environ), capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  with open(tmp_path / "eval_step_2.json") as f:
    report = json.load(f)["test"]["exact"]
  assert report["num_bins"] == 17
  line = next(row for row in out.stdout.splitlines() if row.startswith("test exact:"))
  assert line.startswith(f"test exact: {report['bpd']:.4f} ± {report['bpd_stderr']:.4f} bits/dim ")
  assert "17 bins per pixel: bits/dim uses log2(17)" in line
