"""The one loop: outputs, resume equality, kill/resume, non-finite guard, checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genfam import cadence, registry, train
from genfam.checkpointing import Checkpointer
from genfam.errors import GenfamError
from genfam.logbook import read_metrics
from tests.conftest import REPO, load_config


def _params(workdir, config):
  run = train.Run(config, workdir)
  state, _, meta = run.restore()
  return state, meta


def _train_losses(workdir):
  return [r["loss"] for r in read_metrics(workdir) if r["split"] == "train"]


def test_cadence_first_last_and_period():
  due = [s for s in range(1, 11) if cadence.is_due(s, 4, 10, first=True)]
  assert due == [1, 4, 8, 10]
  assert [s for s in range(1, 6) if cadence.is_due(s, 0, 5)] == [5]


def test_smoke_run_writes_everything(tmp_path):
  config = load_config("independent")
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["step"] == config.train.num_steps
  report = summary["test"]["exact"]
  assert report["num_examples"] == config.eval.num_examples and report["num_bins"] == 17
  assert 0 < report["bpd"] < np.log2(17) + 0.2 and report["bpd_stderr"] > 0
  for name in ("results.json", "samples.png", "metrics.jsonl", "config.json"):
    assert os.path.exists(tmp_path / name), name
  assert os.listdir(tmp_path / "tb")
  rows = read_metrics(str(tmp_path))
  assert [r["step"] for r in rows if r["split"] == "train"] == list(range(1, config.train.num_steps + 1))
  assert any(r["split"] == "eval" for r in rows) and any(r["split"] == "test/exact" for r in rows)
  assert Checkpointer(str(tmp_path), config).steps()[-1] == config.train.num_steps


def test_resume_equals_uninterrupted(tmp_path):
  config = load_config("independent")
  config.train.eval_every = 0
  train.train_and_evaluate(config, str(tmp_path / "full"))
  interrupted = load_config("independent")
  interrupted.train.eval_every = 0
  interrupted.train.num_steps = 3  # stops after 3 steps (a checkpoint at 3), then continues
  train.train_and_evaluate(interrupted, str(tmp_path / "split"))
  train.train_and_evaluate(config, str(tmp_path / "split"))
  full, meta_full = _params(str(tmp_path / "full"), config)
  split, meta_split = _params(str(tmp_path / "split"), config)
  assert meta_full["step"] == meta_split["step"] == config.train.num_steps
  jax.tree.map(np.testing.assert_array_equal, full, split)
  assert _train_losses(str(tmp_path / "full")) == _train_losses(str(tmp_path / "split"))


def test_time_budget_stops_checkpoints_and_is_kept_on_resume(tmp_path):
  config = load_config("independent")
  config.train.max_train_seconds = 1e-6  # spent by the first step
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["step"] == 1 and "exact" in summary["test"]
  assert Checkpointer(str(tmp_path), config).steps() == [1]
  again = train.train_and_evaluate(config, str(tmp_path))  # the budget is the run's, not the session's
  assert again["step"] == 1 and again["train_seconds"] == summary["train_seconds"]
  assert again["train_images_per_s"] == summary["train_images_per_s"]  # kept from the session that trained
  config.train.max_train_seconds = 0.0
  assert train.train_and_evaluate(config, str(tmp_path))["step"] == config.train.num_steps


def _cli(args, env=None, **kw):
  env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", "genfam.main", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, **kw)


def test_killed_run_resumes_exactly(tmp_path):
  """SIGKILL at an arbitrary moment, same command again: same result as never stopping."""
  args = ["--config=configs/independent.py:smoke", "--config.train.num_steps=60",
          "--config.train.checkpoint_every=7", "--config.train.eval_every=0"]
  full = _cli(args + [f"--workdir={tmp_path / 'full'}"])
  assert full.returncode == 0, full.stderr[-2000:]
  env = dict(os.environ)
  proc = subprocess.Popen([sys.executable, "-m", "genfam.main", *args, f"--workdir={tmp_path / 'killed'}"],
                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  metrics = tmp_path / "killed" / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline:  # kill once it has checkpointed and run past it
    if metrics.exists() and sum(1 for _ in open(metrics)) >= 17:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_steps = [r["step"] for r in read_metrics(str(tmp_path / "killed"))]
  assert killed_steps and max(killed_steps) < 60, "the run finished before it could be killed"
  resumed = _cli(args + [f"--workdir={tmp_path / 'killed'}"])
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resumed from step" in resumed.stdout
  config = load_config("independent")
  a, _ = _params(str(tmp_path / "full"), config)
  b, _ = _params(str(tmp_path / "killed"), config)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert _train_losses(str(tmp_path / "full")) == _train_losses(str(tmp_path / "killed"))


def _with_nan_updates(monkeypatch, bad_steps):
  """Makes the family's update return a NaN loss (and NaN params) at `bad_steps` (0-based)."""
  make = registry.make_family

  def make_bad(config, spec):
    family = make(config, spec)

    def update(state, batch, rng):
      new_state, metrics = family.update(state, batch, rng)
      count = optax.tree.get_all_with_path(state.opt_state, "count")[0][1]  # applied steps so far
      bad = jnp.isin(count, jnp.array(bad_steps))
      poison = jnp.where(bad, jnp.nan, 0.0)
      new_state = new_state.replace(params=jax.tree.map(lambda p: p + poison, new_state.params))
      return new_state, dict(metrics, loss=metrics["loss"] + poison)
    return family._replace(update=update)

  monkeypatch.setattr(registry, "make_family", make_bad)
  monkeypatch.setattr(train.registry, "make_family", make_bad)


def test_nonfinite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
  # The optimizer's count only advances on applied steps, so "bad" counts are
  # hit once each: step indices 2 and 4 of the applied sequence.
  _with_nan_updates(monkeypatch, [2, 4])
  config = load_config("independent")
  config.optim.learning_rate = 1e-2
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["nonfinite_steps"] >= 1
  rows = [r for r in read_metrics(str(tmp_path)) if r["split"] == "train"]
  assert any(r["skipped"] == 1.0 for r in rows)
  state, _ = _params(str(tmp_path), config)
  assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(state))


def test_consecutive_nonfinite_steps_stop_the_run(tmp_path, monkeypatch):
  _with_nan_updates(monkeypatch, list(range(3, 1000)))
  config = load_config("independent")
  config.train.num_steps = 30
  config.train.max_consecutive_nonfinite = 5
  with pytest.raises(GenfamError, match=r"5 consecutive non-finite steps \(4\.\.8\)"):
    train.train_and_evaluate(config, str(tmp_path))
  state, meta = _params(str(tmp_path), config)  # checkpoints in a bad streak hold the last good state
  assert meta["step"] >= 4
  assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(state))


def test_corrupt_latest_checkpoint_falls_back(tmp_path):
  config = load_config("independent")
  config.train.eval_every = 0
  train.train_and_evaluate(config, str(tmp_path))
  ckpt = Checkpointer(str(tmp_path), config)
  latest = ckpt.steps()[-1]
  for root, _, files in os.walk(tmp_path / "checkpoints" / str(latest) / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  state, meta = _params(str(tmp_path), config)
  assert meta["step"] == ckpt.steps()[-2]


def test_incompatible_checkpoint_is_refused(tmp_path):
  config = load_config("independent")
  config.train.num_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  other = load_config("independent")
  other.model.class_conditional = True
  with pytest.raises(GenfamError, match=r"incompatible config \(model\.class_conditional: False -> True\).*new --workdir"):
    train.train_and_evaluate(other, str(tmp_path))


def test_cli_eval_and_sample_modes(tmp_path):
  base = ["--config=configs/independent.py:smoke", f"--workdir={tmp_path}"]
  missing = _cli(base + ["--mode=eval"])
  assert missing.returncode == 2 and "no checkpoint" in missing.stderr and "Traceback" not in missing.stderr
  assert _cli(base + ["--config.train.num_steps=2"]).returncode == 0
  evaluated = _cli(base + ["--mode=eval"])
  assert evaluated.returncode == 0 and "test exact:" in evaluated.stdout
  assert (tmp_path / "eval_step_2.json").exists()
  sampled = _cli(base + ["--mode=sample", f"--out={tmp_path / 'grid.png'}"])
  assert sampled.returncode == 0 and (tmp_path / "grid.png").exists()


def test_cli_unknown_config_key_suggests_the_close_one(tmp_path):
  out = _cli(["--config=configs/independent.py:smoke", "--config.train.num_step=3", f"--workdir={tmp_path}"])
  assert out.returncode == 2
  assert out.stderr.strip() == ("error: unknown config key 'train.num_step': did you mean "
                                "--config.train.num_steps?")


def test_cli_missing_dataset_says_how_to_get_it(tmp_path):
  out = _cli(["--config=configs/independent.py:smoke", "--config.data.name=fashion_mnist",
              f"--config.data.source_dir={tmp_path}", f"--workdir={tmp_path / 'run'}"])
  assert out.returncode == 2 and "Traceback" not in out.stderr
  line = out.stderr.strip().splitlines()[-1]
  assert "Fashion-MNIST is not on this machine" in line and "apt-get install -y dataset-fashion-mnist" in line


def test_batch_not_divisible_by_devices(tmp_path):
  out = _cli(["--config=configs/independent.py:smoke", "--config.data.batch_size=12", f"--workdir={tmp_path}"],
             env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      "error: batch size 12 does not divide by the 8 devices: set --config.data.batch_size to a multiple of 8")
