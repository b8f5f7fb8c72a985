"""experiments.benchmarks.benchmark_eval: every bound of a trained smoke run timed in float32 and bfloat16."""
import json
import subprocess
import sys

import pytest

from experiments.benchmarks import benchmark_eval
from tests.conftest import REPO
from tests.test_benchmark_speed import expected_malloc, started_by_hand

pytestmark = pytest.mark.slow  # a trained workdir and the benchmark's command line


def test_every_bound_in_both_dtypes_on_the_same_images(tmp_path):
  subprocess.run([sys.executable, "-m", "genfam.main", "--config=configs/vae.py:smoke", f"--workdir={tmp_path}",
                  "--config.train.progress=False"], cwd=REPO, check=True, capture_output=True)
  before = sorted(p.name for p in tmp_path.iterdir())
  fp32 = benchmark_eval.evaluate_speed(str(tmp_path), "float32", num_examples=12)
  bf16 = benchmark_eval.evaluate_speed(str(tmp_path), "bfloat16", num_examples=12)
  assert set(fp32) == set(bf16) and {"elbo"} < set(fp32)                  # the ELBO and the IWAE extra
  for kind in fp32:
    assert fp32[kind]["num_examples"] == bf16[kind]["num_examples"] == 12
    assert fp32[kind]["images_per_s"] > 0 and fp32[kind]["test_split_hours"] > 0
    assert abs(bf16[kind]["bpd"] - fp32[kind]["bpd"]) < 0.02 * fp32[kind]["bpd"]   # the mixed-precision tolerance
  assert sorted(p.name for p in tmp_path.iterdir()) == before              # nothing written into the workdir
  rows = [{"workdir": "w", "kind": k, "dtype": "float32", "bpd_minus_float32": None, **r} for k, r in fp32.items()]
  assert "| w | elbo | float32 | 12 |" in benchmark_eval.markdown(rows) and json.dumps(rows)
  # Started by hand, it restarts under the run's train.malloc, as genfam.main --mode=eval would.
  proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.benchmark_eval", str(tmp_path), "--num_examples=4",
                         "--dtypes=float32"], cwd=REPO, env=started_by_hand(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"malloc '{expected_malloc()}'" in proc.stdout, proc.stdout
