"""Bidirectional Monte Carlo on a trained GAN (`experiments/studies/gan_bdmc.py`).

The smoke GAN (configs/gan.py:smoke, digits, 4 steps) trained through the
normal loop; BDMC on 2 simulated examples at T = 2 and 8 with 2 chains:
the JSON holds every setting and row field, all finite; the forward bound
(the family's AIS estimate) lies below the reverse one on the mean over
examples; the gap at T = 8 is not larger than at T = 2 beyond noise; the
bits/dim are the family's conversion of the nats; a rerun with the same seed
reproduces a row exactly (the simulated data do not depend on the other T);
sigma^2 comes from --sigma2, then ais_sigma.json, then the config; a workdir
without a checkpoint is refused with one line.
"""
import json
import math

import numpy as np
import pytest

from experiments.studies import gan_bdmc
from genfam.loop import train
from genfam.errors import GenfamError
from tests.conftest import load_config

pytestmark = pytest.mark.slow  # a GAN trained through the loop, then the BDMC experiment

ROW_FIELDS = ("steps", "forward_nats", "reverse_nats", "gap_nats", "forward_bpd", "reverse_bpd", "gap_bpd",
              "forward_acceptance", "reverse_acceptance", "compile_seconds", "seconds")
SETTINGS = ("workdir", "step", "family", "condition", "examples", "num", "seed", "sigma2", "sigma2_source",
            "steps", "chains", "adapt_chains", "leapfrog", "step_size", "batch_size", "num_dims", "num_bins",
            "bpd", "device", "rows")


@pytest.fixture(scope="module")
def bdmc(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("gan_smoke"))
  config = load_config("gan")
  config.train.progress = False
  train.train_and_evaluate(config, workdir)
  out = gan_bdmc.main([f"--workdir={workdir}", "--num=2", "--steps=2,8", "--chains=2"])
  return workdir, out


def test_report_has_every_field_and_is_finite(bdmc):
  workdir, out = bdmc
  with open(f"{workdir}/bdmc.json") as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(out))
  assert all(k in saved for k in SETTINGS)
  assert (saved["num"], saved["steps"], saved["chains"], saved["seed"], saved["step"]) == (2, [2, 8], 2, 0, 4)
  assert saved["sigma2"] == 0.01 and saved["leapfrog"] == 2 and saved["adapt_chains"] == 1   # the smoke config's
  assert (saved["num_dims"], saved["num_bins"], saved["condition"]) == (64, 17, "label")
  assert [r["steps"] for r in saved["rows"]] == [2, 8]
  for row in saved["rows"]:
    for name in ROW_FIELDS:
      assert math.isfinite(row[name]), (row["steps"], name)
    for name in ("forward_nats", "reverse_nats", "gap_nats", "forward_bpd", "reverse_bpd", "gap_bpd"):
      assert math.isfinite(row[f"{name}_stderr"]), (row["steps"], name)
    assert len(row["per_example"]["forward_nats"]) == len(row["per_example"]["reverse_nats"]) == 2


def test_forward_below_reverse_and_the_gap_does_not_grow(bdmc):
  """BDMC's sandwich holds in expectation; checked on the mean over examples (with 1 nat of slack)."""
  _, out = bdmc
  rows = {r["steps"]: r for r in out["rows"]}
  for row in rows.values():
    assert row["forward_nats"] <= row["reverse_nats"] + 1.0
    np.testing.assert_allclose(row["gap_nats"], row["reverse_nats"] - row["forward_nats"], rtol=1e-9, atol=1e-9)
  noise = 2.0 * (rows[2]["gap_nats_stderr"] + rows[8]["gap_nats_stderr"]) + 1.0
  assert rows[8]["gap_nats"] <= rows[2]["gap_nats"] + noise


def test_bits_per_dim_are_the_familys_conversion(bdmc):
  """bpd = (-log p + D log K) / (D log 2), as gan.log_likelihood_fn; the gap loses the log K term."""
  _, out = bdmc
  d, k = out["num_dims"], out["num_bins"]
  for row in out["rows"]:
    np.testing.assert_allclose(row["forward_bpd"], (-row["forward_nats"] + d * math.log(k)) / (d * math.log(2)),
                               rtol=1e-6)
    np.testing.assert_allclose(row["reverse_bpd"], (-row["reverse_nats"] + d * math.log(k)) / (d * math.log(2)),
                               rtol=1e-6)
    np.testing.assert_allclose(row["gap_bpd"], row["gap_nats"] / (d * math.log(2)), rtol=1e-6)
    np.testing.assert_allclose(row["gap_bpd"], row["forward_bpd"] - row["reverse_bpd"], rtol=1e-6)


def test_a_rerun_with_the_same_seed_reproduces_the_row(bdmc, tmp_path):
  workdir, out = bdmc
  again = gan_bdmc.main([f"--workdir={workdir}", "--num=2", "--steps=2", "--chains=2",
                         f"--out={tmp_path / 'again.json'}"])
  assert again["rows"][0]["per_example"] == out["rows"][0]["per_example"]
  assert (tmp_path / "again.json").exists()


def test_sigma2_comes_from_the_flag_then_ais_sigma_json_then_the_config(tmp_path):
  config = load_config("gan")
  assert gan_bdmc.choose_sigma2(0.0, str(tmp_path), config) == (0.01, "config eval.ais_sigma2")
  (tmp_path / "ais_sigma.json").write_text(json.dumps({"chosen_sigma2": 0.02}))
  assert gan_bdmc.choose_sigma2(0.0, str(tmp_path), config)[0] == 0.02
  assert gan_bdmc.choose_sigma2(0.04, str(tmp_path), config) == (0.04, "--sigma2")


def test_a_workdir_without_a_checkpoint_is_refused(tmp_path):
  with pytest.raises(GenfamError, match=r"^no checkpoint in .*checkpoints: train first with `python -m genfam.main"):
    gan_bdmc.main([f"--workdir={tmp_path}", "--config=gan:smoke"])
