"""Multi-process training on localhost: 2 processes x 4 fake CPU devices = 1 process x 8.

Processes join through JAX's own runtime (jax.distributed, gloo collectives on
CPU). The global batches do not depend on the process count (one global order;
each process reads its rows), so the losses and the saved parameters of the
two layouts agree; evaluation gives every example the same noise on any process
count, so a stochastic estimate (the GAN's AIS) and the sample-quality scores (FID,
KID, class agreement) of one checkpoint are the same on 2 processes as on 1; killing both processes
(at a set step) and starting them again resumes; a
process that cannot reach its coordinator fails with one line within the timeout.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genfam.loop import train
from genfam.loop.logbook import read_metrics
from tests.conftest import REPO, load_config

pytestmark = pytest.mark.slow  # two processes joined by jax.distributed

ARGS = ["--config=configs/independent.py:smoke", "--config.train.num_steps=12", "--config.train.checkpoint_every=4",
        "--config.train.log_every=1", "--config.train.progress=False", "--config.eval.num_examples=40",
        "--config.eval.batch_size=16"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")


def _start(workdir, num_processes: int, devices: int, *extra, port=None, args=ARGS):
  port = port or _free_port()
  procs = []
  for i in range(num_processes):
    dist = [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}", f"--process_id={i}",
            "--distributed_timeout=60"] if num_processes > 1 else []
    procs.append(subprocess.Popen([sys.executable, "-m", "genfam.main", *args, f"--workdir={workdir}", *dist, *extra],
                                  cwd=REPO, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  return procs


def _finish(procs):
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def _outcome(workdir):
  config = load_config("independent")
  state, _, meta = train.Run(config, str(workdir)).restore()
  losses = [r["loss"] for r in read_metrics(str(workdir)) if r["split"] == "train"]
  return state.params, losses, meta


def test_two_processes_of_four_devices_match_one_of_eight(tmp_path):
  _finish(_start(tmp_path / "one", 1, 8))
  outs = _finish(_start(tmp_path / "two", 2, 4))
  params1, losses1, _ = _outcome(tmp_path / "one")
  params2, losses2, _ = _outcome(tmp_path / "two")
  assert len(losses1) == len(losses2) == 12
  np.testing.assert_allclose(losses2, losses1, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), params2, params1)
  # The test report is the same (the 40 test examples split over the processes), written once.
  one = [line for line in outs[0][0].splitlines() if line.startswith("test exact")]
  r1 = json.load(open(tmp_path / "one" / "results.json"))["test"]["exact"]
  r2 = json.load(open(tmp_path / "two" / "results.json"))["test"]["exact"]
  assert r1["num_examples"] == r2["num_examples"] == 40 and one
  np.testing.assert_allclose(r2["bpd"], r1["bpd"], rtol=1e-6)
  assert json.load(open(tmp_path / "two" / "results.json"))["processes"] == 2
  assert sum(1 for _ in open(tmp_path / "two" / "commands.txt")) == 1  # process 0 writes, once


def test_both_processes_killed_and_restarted_resume(tmp_path):
  """Each process SIGKILLed at its 15th training batch (tests/fault_worker.py: after the
  checkpoint at step 10), then the same command again: both resume from step 10."""
  port, procs = _free_port(), []
  for i in range(2):
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tests", "fault_worker.py"), "step", "15", str(tmp_path), *ARGS[1:],
         "--config.train.num_steps=400", "--config.train.checkpoint_every=10",
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
         "--distributed_timeout=60"], cwd=REPO, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode != 0, err[-2000:]   # killed at step 15 (or stopped by its killed peer), not finished
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [10]
  outs = _finish(_start(tmp_path, 2, 4, "--config.train.num_steps=30", "--config.train.checkpoint_every=10"))
  assert all("resumed from step 10" in out for out, _ in outs)
  _, losses, meta = _outcome(tmp_path)
  assert int(meta["step"]) == 30 and len(losses) == 30


def test_an_unreachable_coordinator_is_one_line_not_a_hang(tmp_path):
  port = _free_port()  # nobody listens there: process 1 without its process 0
  start = time.time()
  proc = subprocess.run([sys.executable, "-m", "genfam.main", *ARGS, f"--workdir={tmp_path}",
                         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", "--process_id=1",
                         "--distributed_timeout=5"], cwd=REPO, env=_env(1), capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.startswith("error: process 1 of 2 could not join the multi-process run at 127.0.0.1:")
  assert proc.stderr.count("\n") == 1 and time.time() - start < 60


def test_gan_ais_and_sample_quality_of_two_processes_match_one(tmp_path):
  """One GAN checkpoint evaluated by 1 process x 8 devices and by 2 x 4: the AIS bits/dim
  (per-row HMC noise; 10 examples in batches of 8, so process 1's last rows are padding)
  and FID / KID / class agreement on a classifier's features agree."""
  smoke = ["--config.train.progress=False"]
  # The judge and the checkpoint are trained here, on this process's one device, as a 1 x 1
  # command would (the GAN without the unchecked test evaluation): two processes fewer.
  classifier = load_config("classifier")
  classifier.train.progress = False
  train.train_and_evaluate(classifier, str(tmp_path / "classifier"))
  gan = ["--config=configs/gan.py:smoke", *smoke, "--config.eval.num_examples=10", "--config.eval.batch_size=8",
         "--config.eval.sample_quality=True", f"--config.eval.classifier_workdir={tmp_path / 'classifier'}",
         "--config.eval.num_samples=24"]
  config = load_config("gan")
  config.train.progress, config.train.num_steps, config.train.final_eval = False, 2, False
  config.eval.num_examples, config.eval.batch_size, config.eval.num_samples = 2, 8, 24
  config.eval.sample_quality, config.eval.classifier_workdir = False, str(tmp_path / "classifier")
  train.train_and_evaluate(config, str(tmp_path / "gan"))
  reports = {}
  for name, processes, devices in (("one", 1, 8), ("two", 2, 4)):
    shutil.copytree(tmp_path / "gan", tmp_path / name)
    _finish(_start(tmp_path / name, processes, devices, "--mode=eval", args=gan))
    results = json.load(open(tmp_path / name / "eval_step_2.json"))
    reports[name] = (results["test"]["ais"], results["sample_quality"])
  (ais1, quality1), (ais2, quality2) = reports["one"], reports["two"]
  assert ais1["num_examples"] == ais2["num_examples"] == 10
  np.testing.assert_allclose(ais2["bpd"], ais1["bpd"], rtol=1e-5)
  for key in ("fid", "kid", "class_agreement"):
    np.testing.assert_allclose(quality2[key], quality1[key], rtol=1e-5, atol=1e-7)
