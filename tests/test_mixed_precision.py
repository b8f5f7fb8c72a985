"""model.dtype=bfloat16 (mixed precision) for every family: the same parameters (so a run can
switch), and after the same smoke steps a test bits/dim within 2% of float32's.

2% is the stated tolerance of the smoke configs (4 steps, tiny nets on 8x8 digits); the real
runs' difference is measured by experiments.benchmarks.mixed_precision and reported in the README.
"""
import math

import jax
import pytest

from genfam import registry
from genfam.data import sources
from genfam.loop.frozen import example_batch
from genfam.loop import train
from tests.conftest import load_config

pytestmark = pytest.mark.slow  # every family trained end to end in both dtypes

FAMILIES = ("realnvp", "glow", "vae", "ddpm", "vdm", "igpt", "gan")
TOLERANCE = 0.02


def _config(name, dtype):
  config = load_config(name)
  config.model.dtype = dtype
  config.train.progress = False
  return config


@pytest.mark.parametrize("name", FAMILIES)
def test_bfloat16_keeps_the_parameters_and_the_bits_per_dim(name, tmp_path):
  spec = sources.dataset_spec(_config(name, "float32").data.name)
  shapes = {}
  for dtype in ("float32", "bfloat16"):
    family = registry.make_family(_config(name, dtype), spec)
    state = jax.eval_shape(family.init, jax.random.PRNGKey(0), example_batch(spec, 2))
    shapes[dtype] = jax.tree.map(lambda x: (x.shape, x.dtype), family.eval_params(state))
  assert shapes["float32"] == shapes["bfloat16"]
  bpd = {}
  for dtype in ("float32", "bfloat16"):
    summary = train.train_and_evaluate(_config(name, dtype), str(tmp_path / dtype))
    kind = next(k for k in summary["test"] if k != "metrics")
    bpd[dtype] = summary["test"][kind]["bpd"]
  assert all(math.isfinite(v) for v in bpd.values())
  assert abs(bpd["bfloat16"] - bpd["float32"]) <= TOLERANCE * bpd["float32"], bpd


def test_a_run_resumes_under_the_other_dtype_and_old_checkpoints_without_the_key_resume(tmp_path):
  from genfam.loop.checkpointing import structural_differences
  config = _config("vae", "float32")
  config.train.num_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  again = _config("vae", "bfloat16")
  again.train.num_steps = 3
  assert train.train_and_evaluate(again, str(tmp_path), allow_config_change=True)["step"] == 3
  saved = again.to_dict()
  del saved["model"]["dtype"]
  assert structural_differences(saved, again.to_dict()) == []
  assert structural_differences(saved, {**saved, "model": {**saved["model"], "latent_dim": 3}}) != []
