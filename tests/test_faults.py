"""Faults a long run meets: kills anywhere, preemption, a second run, config drift, bad workdirs.

Kill anywhere: SIGKILL during a step, during a checkpoint save and during the
final evaluation, then the same command again, gives the uninterrupted run's
parameters, training losses and test bits/dim, and every checkpoint on disk
reads back. SIGTERM (preemption) saves the current step and exits 143. Each
fault meets the run at a set point (tests/fault_worker.py), not after a time.
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genfam.errors import GenfamError
from genfam.loop import train
from genfam.loop import workdir as workdir_guard
from genfam.loop.logbook import read_metrics
from tests.conftest import REPO, load_config

pytestmark = pytest.mark.slow  # subprocesses killed at chosen points, full disks, locks

ARGS = ["--config.train.num_steps=30", "--config.train.checkpoint_every=5", "--config.train.progress=False"]


def _cli(workdir, *extra, **kw):
  return subprocess.run([sys.executable, "-m", "genfam.main", "--config=configs/independent.py:smoke",
                         f"--workdir={workdir}", *ARGS, *extra], cwd=REPO, capture_output=True, text=True, **kw)


def _config():
  config = load_config("independent")
  config.train.num_steps, config.train.checkpoint_every, config.train.progress = 30, 5, False
  return config


def _outcome(workdir):
  """(params, train losses by step, test bpd) of a finished run; every checkpoint must read back."""
  run = train.Run(_config(), str(workdir))
  for step in run.checkpointer.steps():
    run.checkpointer.restore(step, run.abstract_state)  # raises if unreadable
  state, _, _ = run.restore()
  losses = {r["step"]: r["loss"] for r in read_metrics(str(workdir)) if r["split"] == "train"}
  with open(os.path.join(workdir, "results.json")) as f:
    bpd = json.load(f)["test"]["exact"]["bpd"]
  return state.params, losses, bpd


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  proc = _cli(workdir)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return _outcome(workdir)


@pytest.mark.parametrize("point, n", [("step", 13), ("checkpoint", 3), ("eval", 1)])
def test_killed_anywhere_then_restarted_equals_uninterrupted(tmp_path, uninterrupted, point, n):
  killed = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fault_worker.py"), point, str(n),
                           str(tmp_path), *ARGS], cwd=REPO, capture_output=True, text=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert not os.path.exists(tmp_path / "results.json")
  again = _cli(tmp_path)
  assert again.returncode == 0, again.stderr[-2000:]
  params, losses, bpd = _outcome(tmp_path)
  want_params, want_losses, want_bpd = uninterrupted
  jax.tree.map(np.testing.assert_array_equal, params, want_params)
  assert losses == want_losses and bpd == want_bpd


def test_sigterm_saves_the_current_step_and_the_rerun_continues(tmp_path):
  """SIGTERM from outside, sent while the run waits at its 20th training batch (it says so in a
  file): it saves step 20, says so in one line and exits 143; the same command continues."""
  workdir, step = tmp_path / "run", 20
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "fault_worker.py"), "sigterm", str(step),
                           str(workdir), "--config.train.num_steps=100000", "--config.train.checkpoint_every=100000",
                           "--config.train.log_every=1", "--config.train.progress=False"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  waiting, deadline = tmp_path / "run.waiting", time.time() + 300
  while not waiting.exists():
    assert time.time() < deadline and proc.poll() is None, "the run did not start training"
    time.sleep(0.05)
  logged = max(json.loads(line)["step"] for line in open(workdir / "metrics.jsonl") if line.endswith("\n"))
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
  assert "preempted (SIGTERM) at step" in err and "rerun the same command" in err
  assert int(err.split("preempted (SIGTERM) at step ")[1].split(":")[0]) == step == logged + 1
  config = load_config("independent")
  assert train.Run(config, str(workdir)).checkpointer.steps()[-1] == step >= logged
  again = subprocess.run([sys.executable, "-m", "genfam.main", "--config=configs/independent.py:smoke",
                          f"--workdir={workdir}", f"--config.train.num_steps={step + 3}",
                          "--config.train.progress=False"], cwd=REPO, capture_output=True, text=True)
  assert again.returncode == 0 and f"resumed from step {step}" in again.stdout, again.stderr[-2000:]


def test_a_second_run_in_the_same_workdir_is_refused(tmp_path):
  with workdir_guard.lock(str(tmp_path)):
    with pytest.raises(GenfamError, match=r"is in use by a running run \(pid \d+ on .*use another --workdir"):
      train.train_and_evaluate(_config(), str(tmp_path))
    proc = _cli(tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "in use by a running run" in proc.stderr


def test_a_killed_lock_holder_leaves_no_stale_lock(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                             "from genfam.loop import workdir; ctx = workdir.lock(sys.argv[2]); ctx.__enter__(); "
                             "print('held', flush=True); time.sleep(600)", REPO, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(GenfamError, match="in use"):
    with workdir_guard.lock(str(tmp_path)):
      pass
  holder.kill()
  holder.wait()
  with workdir_guard.lock(str(tmp_path)):  # the kernel dropped the dead holder's lock
    pass


def test_config_drift_on_resume_is_refused_or_recorded(tmp_path):
  config = _config()
  config.train.num_steps = 4
  train.train_and_evaluate(config, str(tmp_path))
  started_with = open(tmp_path / "config.json").read()
  config.train.num_steps = 6
  config.optim.learning_rate = 0.5
  with pytest.raises(GenfamError, match=r"trained to step 4 with another config \(optim.learning_rate: "
                                        r"0.03 -> 0.5\).*--allow_config_change"):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / workdir_guard.HISTORY_FILE)
  train.train_and_evaluate(config, str(tmp_path), allow_config_change=True)
  config.train.num_steps = 8  # extending the run is always allowed, and logged
  train.train_and_evaluate(config, str(tmp_path))
  history = [json.loads(line) for line in open(tmp_path / workdir_guard.HISTORY_FILE)]
  assert [h["step"] for h in history] == [4, 6]
  assert history[0]["changes"] == {"optim.learning_rate": [0.03, 0.5], "train.num_steps": [4, 6]}
  assert history[0]["allowed_by_flag"] and not history[1]["allowed_by_flag"]
  assert open(tmp_path / "config.json").read() == started_with  # the record of how the run started


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fault_worker.py"), "enospc", "3",
                         str(tmp_path), *ARGS], cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.count("\n") == 1 and "No space left on device" in proc.stderr and "kept" in proc.stderr
  assert train.Run(_config(), str(tmp_path)).checkpointer.steps() == [5, 10]
  again = _cli(tmp_path)  # with space again, the same command continues from step 10
  assert again.returncode == 0 and "resumed from step 10" in again.stdout, again.stderr[-2000:]


def test_a_read_only_workdir_is_one_line_and_keeps_the_checkpoint(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root writes into read-only directories")
  config = _config()
  config.train.num_steps = 4
  train.train_and_evaluate(config, str(tmp_path))
  os.chmod(tmp_path, 0o555)
  try:
    proc = _cli(tmp_path, "--config.train.num_steps=8")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
  finally:
    os.chmod(tmp_path, 0o755)
