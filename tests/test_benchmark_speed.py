"""experiments.benchmark_speed: config entries with overrides, and one timed step of a smoke config."""
import math

from experiments import benchmark_speed


def test_entries_carry_overrides_parsed_as_literals():
  assert benchmark_speed.parse_entry("igpt:smoke@model.dtype=bfloat16@data.batch_size=8") == (
      "igpt", "smoke", {"model.dtype": "bfloat16", "data.batch_size": 8})
  config = benchmark_speed.load_entry("igpt:smoke@model.dtype=bfloat16@model.query_block=0")
  assert config.model.dtype == "bfloat16" and config.model.query_block == 0 and not config.train.progress


def test_a_smoke_step_is_timed_with_its_flops():
  row = benchmark_speed.train_step_speed(benchmark_speed.load_entry("igpt:smoke@model.dtype=bfloat16"), steps=1)
  assert row["images_per_s"] > 0 and row["flops_per_step"] > 0 and math.isfinite(row["flops_per_s"])
  assert row["tokens_per_s"] == row["images_per_s"] * 64


def test_run_settings_name_the_xla_flags_cpus_and_commit(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution")
  settings = benchmark_speed.run_settings()
  assert settings["xla_flags"] == "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
  assert settings["cpus"] >= 1 and settings["devices"].endswith("cpu") and settings["commit"]
