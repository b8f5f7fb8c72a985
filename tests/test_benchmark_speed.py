"""experiments.benchmarks.benchmark_speed: config entries with overrides, and one timed step of a smoke config."""
import json
import math
import os
import subprocess
import sys

import pytest

from experiments.benchmarks import benchmark_speed
from genfam.cpu import host_memory
from tests.conftest import REPO


def expected_malloc() -> str:
  """The malloc a benchmark started by hand runs under for default configs: it restarts itself
  under jemalloc where the library is installed, as genfam.main does."""
  return "jemalloc" if host_memory.jemalloc_library() else ("glibc" if host_memory._libc() else "other")


def started_by_hand() -> dict:
  return {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES")}


def test_entries_carry_overrides_parsed_as_literals():
  assert benchmark_speed.parse_entry("igpt:smoke@model.dtype=bfloat16@data.batch_size=8") == (
      "igpt", "smoke", {"model.dtype": "bfloat16", "data.batch_size": 8})
  config = benchmark_speed.load_entry("igpt:smoke@model.dtype=bfloat16@model.query_block=0")
  assert config.model.dtype == "bfloat16" and config.model.query_block == 0 and not config.train.progress


@pytest.mark.slow
def test_a_smoke_step_is_timed_with_its_flops():
  row = benchmark_speed.train_step_speed(benchmark_speed.load_entry("igpt:smoke@model.dtype=bfloat16"), steps=1)
  assert row["images_per_s"] > 0 and row["flops_per_step"] > 0 and math.isfinite(row["flops_per_s"])
  assert row["tokens_per_s"] == row["images_per_s"] * 64


@pytest.mark.slow
def test_main_runs_under_the_configs_malloc(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.benchmark_speed", "--configs=vae:smoke", "--steps=1",
                         f"--out={out}"], cwd=REPO, env=started_by_hand(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["settings"]["malloc"] == result["configs"]["vae:smoke"]["malloc"] == expected_malloc()
  assert "note:" not in proc.stdout, proc.stdout


def test_run_settings_name_the_xla_flags_cpus_and_commit(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution")
  settings = benchmark_speed.run_settings()
  assert settings["xla_flags"] == "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
  assert settings["cpus"] >= 1 and settings["devices"].endswith("cpu") and settings["commit"]
