"""Sweeps on an Optuna study: enqueue once, workers pull, a killed worker's trial is retried.

Each trial is a real `genfam.main` subprocess of the independent baseline's
smoke config (seconds), so these tests exercise what a sweep across machines
does, on one machine: with SQLite, and with a PostgreSQL server started here
from Debian's package (skipped where it is not installed).
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings

import pytest

from tests.conftest import REPO

optuna = pytest.importorskip("optuna")

pytestmark = pytest.mark.slow  # workers and trials are subprocesses

CONFIG = "configs/independent.py:smoke"


def _sweep(*args, **kwargs):
  return subprocess.run([sys.executable, "-m", "experiments.studies.sweep", *args], cwd=REPO, capture_output=True,
                        text=True, **kwargs)


def _worker(storage, study, *extra):
  return subprocess.Popen([sys.executable, "-m", "experiments.studies.sweep", "--mode=worker", f"--storage={storage}",
                           f"--study={study}", *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _enqueue(storage, root, variants, common="train.progress=False"):
  proc = _sweep("--mode=enqueue", f"--storage={storage}", "--study=s", f"--config={CONFIG}", f"--root={root}",
                f"--common={common}", *[f"--variant={v}" for v in variants])
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc


def _trials(storage):
  return optuna.load_study(study_name="s", storage=storage).get_trials()


def _postgres_bin():
  found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
  return os.path.dirname(found[-1]) if found else None


@pytest.fixture
def postgres():
  """A throwaway PostgreSQL server on localhost (Debian's package), as the `postgres` user when root."""
  pytest.importorskip("psycopg2")
  bin_dir = _postgres_bin()
  if bin_dir is None:
    pytest.skip("PostgreSQL server not installed (Debian: apt-get install postgresql)")
  import pathlib
  import tempfile
  root = pathlib.Path(tempfile.mkdtemp(prefix="genfam-pg-"))  # not under pytest's root-only tmp dirs
  data, run_dir = root / "data", root / "run"
  run_dir.mkdir()
  as_user = []
  if os.geteuid() == 0:
    shutil.chown(root, "postgres")
    shutil.chown(run_dir, "postgres")
    os.chmod(root, 0o755)
    as_user = ["runuser", "-u", "postgres", "--"]
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
  subprocess.run([*as_user, f"{bin_dir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres"], check=True,
                 capture_output=True)
  subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                  f"-p {port} -k {run_dir} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
  try:
    subprocess.run([*as_user, f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "sweep"],
                   check=True, capture_output=True)
    yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/sweep"
  finally:
    subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_run_each_variant_once_and_a_finished_grid_is_not_rerun(tmp_path, backend, request):
  storage = f"sqlite:///{tmp_path / 'sweep.db'}" if backend == "sqlite" else request.getfixturevalue("postgres")
  variants = [f"lr{i}:optim.learning_rate={lr}" for i, lr in enumerate([0.01, 0.03, 0.1])]
  _enqueue(storage, tmp_path / "runs", variants)
  _enqueue(storage, tmp_path / "runs", variants)  # enqueued twice: still one trial per variant
  assert len(_trials(storage)) == 3
  workers = [_worker(storage, "s") for _ in range(2)]
  outputs = [w.communicate(timeout=600)[0] for w in workers]
  assert all(w.returncode == 0 for w in workers), outputs
  done = [t for t in _trials(storage) if t.state == optuna.trial.TrialState.COMPLETE]
  assert sorted(t.params["variant"] for t in done) == ["lr0", "lr1", "lr2"]  # each once, none twice
  for t in done:
    assert os.path.exists(os.path.join(t.user_attrs["workdir"], "results.json")) and 0 < t.value < 4.1
  # A worker on a finished grid runs nothing.
  again = _worker(storage, "s")
  assert "ran 0 trials" in again.communicate(timeout=300)[0]
  table = _sweep("--mode=report", f"--storage={storage}", "--study=s")
  assert table.returncode == 0 and table.stdout.count("| lr") == 3 and "3 complete" in table.stdout


def test_a_killed_workers_trial_is_retried_and_resumes(tmp_path):
  storage = f"sqlite:///{tmp_path / 'sweep.db'}"
  root = tmp_path / "runs"
  _enqueue(storage, root, ["long:train.num_steps=4000,train.checkpoint_every=200,train.log_every=200"])
  beat = ["--heartbeat-interval=1", "--grace-period=3"]
  worker = _worker(storage, "s", *beat)
  checkpoints = root / "long" / "checkpoints"
  deadline = time.time() + 300
  while not (checkpoints.exists() and any(p.name.isdigit() for p in checkpoints.iterdir())):
    assert time.time() < deadline and worker.poll() is None, "the trial never saved a checkpoint"
    time.sleep(0.2)
  child = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
  worker.send_signal(signal.SIGKILL)
  worker.wait()
  # Until Optuna itself finds the trial stale (no heartbeat for the grace period), not a set time.
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)   # heartbeats
    heartbeats = optuna.storages.RDBStorage(storage, heartbeat_interval=1, grace_period=3)
  study_id, deadline = heartbeats.get_study_id_from_name("s"), time.time() + 120
  while not heartbeats._get_stale_trial_ids(study_id):
    assert time.time() < deadline, "the killed worker's trial never went stale"
    time.sleep(0.1)
  for pid in child:  # the run died with its worker (no orphan training on)
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
  second = _worker(storage, "s", *beat)
  out = second.communicate(timeout=600)[0]
  assert second.returncode == 0, out
  states = sorted(t.state.name for t in _trials(storage))
  assert states == ["COMPLETE", "FAIL"], states
  assert "resumed from step" in out  # the retry continued the killed run's workdir
