"""Every config's smoke variant: trains, evaluates, samples, checkpoints, resumes.

Resume: N steps uninterrupted and k steps + restart + N-k steps give identical
parameters and identical training metrics on CPU.
"""
import glob
import os

import jax
import numpy as np
import pytest

from genfam import train
from genfam.checkpointing import Checkpointer
from genfam.logbook import read_metrics
from tests.conftest import REPO, load_config

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py")))


def _restore(config, workdir):
  state, _, meta = train.Run(config, workdir).restore()
  return state, meta


def _train_rows(workdir):
  return [{k: v for k, v in r.items() if k != "images_per_s"} for r in read_metrics(workdir) if r["split"] == "train"]


@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_trains_evaluates_samples_and_resumes(name, tmp_path):
  config = load_config(name)
  config.train.progress = False
  total = config.train.num_steps
  assert 2 <= total <= 10, "smoke variants stay a few steps"
  summary = train.train_and_evaluate(config, str(tmp_path / "full"))

  # evaluated: every bound the family offers, finite, labelled, with parts that add up
  assert summary["step"] == total and summary["test"]
  for kind, report in summary["test"].items():
    expected = config.eval.num_examples if kind == list(summary["test"])[0] else (
        config.eval.get("extra_num_examples", 0) or config.eval.num_examples)
    assert np.isfinite(report["bpd"]) and report["num_examples"] == expected, kind
  # sampled and checkpointed
  assert os.path.getsize(tmp_path / "full" / "samples.png") > 0
  assert Checkpointer(str(tmp_path / "full"), config).steps()[-1] == total

  # resumed: k steps, restart, N - k steps == N steps
  first = load_config(name)
  first.train.progress = False
  first.train.num_steps = total // 2
  train.train_and_evaluate(first, str(tmp_path / "split"))
  train.train_and_evaluate(config, str(tmp_path / "split"))
  a, meta_a = _restore(config, str(tmp_path / "full"))
  b, meta_b = _restore(config, str(tmp_path / "split"))
  assert meta_a["step"] == meta_b["step"] == total
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert _train_rows(str(tmp_path / "full")) == _train_rows(str(tmp_path / "split"))
