"""The one loop: outputs, resume equality, kill/resume, non-finite guard, checkpoints."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genfam import registry
from genfam.errors import GenfamError
from genfam.loop import cadence, checkpointing, train
from genfam.loop.checkpointing import Checkpointer
from genfam.loop.logbook import read_metrics
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
  assert summary["nonfinite_steps"] == 0 and summary["alerts"] == {}
  # What the numbers were computed on: dataset, source, fingerprint, split sizes read.
  data = summary["data"]
  assert data["dataset"] == "digits" and data["fingerprint"].startswith("src-")
  assert (data["num_train"], data["num_test"]) == (1437, 360) and data["fingerprint"] in data["prepared_dir"]
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


def test_training_clock_leaves_out_excluded_blocks():
  now = [100.0]
  clock = cadence.TrainingClock(seconds_before=7.0, now=lambda: now[0])
  now[0] += 2.0
  with clock.excluded():
    now[0] += 50.0
  now[0] += 1.0
  assert clock.seconds() == 10.0


def test_periodic_evaluation_does_not_spend_the_training_budget(tmp_path, monkeypatch):
  """On a clock of the test's own, each periodic evaluation takes 40 s and each reading of the
  clock outside them 1 ms: the run's train_seconds (what max_train_seconds and
  eval.every_seconds read) leaves the three evaluations out."""
  now = [1000.0]

  def clock():
    now[0] += 0.001
    return now[0]
  monkeypatch.setattr(cadence, "clock_source", lambda kind: clock)
  real = train.Run.evaluate

  def slow_evaluate(self, *args, **kwargs):
    now[0] += 40.0
    return real(self, *args, **kwargs)

  monkeypatch.setattr(train.Run, "evaluate", slow_evaluate)
  config = load_config("independent")
  config.train.num_steps, config.train.eval_every, config.train.max_train_seconds = 4, 1, 60.0
  start = now[0]
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["step"] == 4
  evals = [r for r in read_metrics(str(tmp_path)) if r["split"] == "eval"]
  assert len(evals) == 3   # steps 1..3 (the last step gets the final evaluation)
  assert summary["train_seconds"] <= now[0] - start - 3 * 40.0


def _cli(args, env=None, **kw):
  env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", "genfam.main", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path):
  """SIGKILL mid-run (at the 17th training batch: after the checkpoint at step 14, before the
  next), same command again: same result as never stopping."""
  args = ["--config=configs/independent.py:smoke", "--config.train.num_steps=60",
          "--config.train.checkpoint_every=7", "--config.train.eval_every=0"]
  full = _cli(args + [f"--workdir={tmp_path / 'full'}"])
  assert full.returncode == 0, full.stderr[-2000:]
  killed = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fault_worker.py"), "step", "17",
                           str(tmp_path / "killed"), *args[1:]], cwd=REPO, capture_output=True, text=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  killed_steps = [r["step"] for r in read_metrics(str(tmp_path / "killed"))]
  assert killed_steps and max(killed_steps) < 60, "the run finished before it could be killed"
  resumed = _cli(args + [f"--workdir={tmp_path / 'killed'}"])
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resumed from step 14" in resumed.stdout
  config = load_config("independent")
  a, _ = _params(str(tmp_path / "full"), config)
  b, _ = _params(str(tmp_path / "killed"), config)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert _train_losses(str(tmp_path / "full")) == _train_losses(str(tmp_path / "killed"))


def _wrap_update(monkeypatch, wrap):
  """Builds every family with its update replaced by wrap(update, config)."""
  make = registry.make_family

  def make_wrapped(config, spec):
    family = make(config, spec)
    return family._replace(update=wrap(family.update, config))

  monkeypatch.setattr(registry, "make_family", make_wrapped)
  monkeypatch.setattr(train.registry, "make_family", make_wrapped)


def _at_steps(config, rng, steps):
  """bool[]: is `rng` the loop's key of one of `steps` (0-based loop steps)?"""
  train_key = jax.random.split(jax.random.PRNGKey(config.seed), 4)[1]
  keys = jax.vmap(lambda s: jax.random.fold_in(train_key, s))(jnp.asarray(steps))
  return jnp.any(jnp.all(keys == rng[None], axis=-1))


def _with_nan_updates(monkeypatch, bad_steps):
  """Makes the family's update return a NaN loss (and NaN params) at loop steps
  `bad_steps` (0-based), recognised by the per-step key the loop passes in."""

  def wrap(update, config):
    def bad_update(state, batch, rng):
      new_state, metrics = update(state, batch, rng)
      poison = jnp.where(_at_steps(config, rng, bad_steps), jnp.nan, 0.0)
      new_state = new_state.replace(params=jax.tree.map(lambda p: p + poison, new_state.params))
      return new_state, dict(metrics, loss=metrics["loss"] + poison)
    return bad_update

  _wrap_update(monkeypatch, wrap)


def _checkpoints(workdir, config):
  """{step: (state, meta)} of every checkpoint in WORKDIR."""
  run = train.Run(config, workdir)
  out = {}
  for step in run.checkpointer.steps():
    state, _, meta = run.checkpointer.restore(step, run.abstract_state)
    out[step] = state, meta
  return out


def _finite(state):
  return all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact))


def test_nonfinite_steps_are_skipped_and_training_recovers(tmp_path, monkeypatch):
  _with_nan_updates(monkeypatch, [1, 3])  # loop steps 2 and 4 (of 6; checkpoints at 2, 4, 6)
  config = load_config("independent")
  config.train.eval_every = 0
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["step"] == 6 and summary["nonfinite_steps"] == 2
  rows = [r for r in read_metrics(str(tmp_path)) if r["split"] == "train"]
  assert [r["step"] for r in rows if r["skipped"] == 1.0] == [2, 4]
  assert all(isinstance(r["loss"], float) for r in rows if r["step"] not in (2, 4))
  checkpoints = _checkpoints(str(tmp_path), config)
  assert sorted(checkpoints) == [2, 4, 6] and all(_finite(state) for state, _ in checkpoints.values())
  count = lambda state: int(optax.tree.get_all_with_path(state.opt_state, "count")[0][1])  # noqa: E731
  assert [count(checkpoints[s][0]) for s in (2, 4, 6)] == [1, 2, 4]  # steps after each skip were applied
  changed = jax.tree.map(lambda a, b: bool((a != b).any()), checkpoints[4][0].params, checkpoints[6][0].params)
  assert any(jax.tree.leaves(changed))


def test_consecutive_nonfinite_steps_stop_the_run(tmp_path, monkeypatch):
  _with_nan_updates(monkeypatch, list(range(3, 1000)))
  config = load_config("independent")
  config.train.num_steps = 30
  config.train.max_consecutive_nonfinite = 5
  with pytest.raises(GenfamError, match=r"5 consecutive non-finite steps \(4\.\.8\)"):
    train.train_and_evaluate(config, str(tmp_path))
  checkpoints = _checkpoints(str(tmp_path), config)  # those in a bad streak hold the last good state
  assert max(checkpoints) >= 4 and all(_finite(state) for state, _ in checkpoints.values())


def test_alerts_and_vector_metrics(tmp_path, monkeypatch, capsys):
  """A family's `alert_<name>` metrics warn once and land in results.json;
  a 1-D metric is logged as a list."""

  def wrap(update, config):
    def alerting_update(state, batch, rng):
      state, metrics = update(state, batch, rng)
      late = _at_steps(config, rng, [2, 3, 4, 5]).astype(jnp.float32)  # loop steps 3..6
      return state, dict(metrics, alert_late=late, alert_never=jnp.float32(0), per_dim=jnp.arange(3.0) * late)
    return alerting_update

  _wrap_update(monkeypatch, wrap)
  config = load_config("independent")
  config.train.eval_every = 0
  summary = train.train_and_evaluate(config, str(tmp_path))
  warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
  assert warnings == ["warning: late at step 3"]
  assert summary["alerts"] == {"late": 3}
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["alerts"] == {"late": 3}
  rows = [r for r in read_metrics(str(tmp_path)) if r["split"] == "train"]
  assert rows[0]["per_dim"] == [0.0, 0.0, 0.0] and rows[-1]["per_dim"] == [0.0, 1.0, 2.0]


def test_corrupt_latest_checkpoint_is_replaced(tmp_path):
  config = load_config("independent")
  config.train.eval_every = 0
  train.train_and_evaluate(config, str(tmp_path))
  ckpt = Checkpointer(str(tmp_path), config)
  latest, previous = ckpt.steps()[-1], ckpt.steps()[-2]
  for root, _, files in os.walk(tmp_path / "checkpoints" / str(latest) / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  state, meta = _params(str(tmp_path), config)
  assert meta["step"] == previous
  assert not (tmp_path / "checkpoints" / str(latest)).exists()  # moved aside, so the run saves it again
  aside = list((tmp_path / "corrupt_checkpoints").iterdir())
  assert [p.name.split(".")[0] for p in aside] == [str(latest)] and (aside[0] / "state").is_dir()  # kept
  train.train_and_evaluate(config, str(tmp_path))
  state, meta = _params(str(tmp_path), config)
  assert meta["step"] == latest and _finite(state)


def test_half_written_checkpoints_are_ignored(tmp_path):
  """A temporary directory orbax left (killed mid-save) is never listed; a step
  directory cut short is corrupt: both fall back to the last good step."""
  config = load_config("independent")
  config.train.num_steps, config.train.eval_every = 4, 0
  train.train_and_evaluate(config, str(tmp_path))
  root = tmp_path / "checkpoints"
  for name in ("6.orbax-checkpoint-tmp", "8.orbax-checkpoint-tmp-1700000000"):  # this orbax's name, older ones'
    (root / name / "state").mkdir(parents=True)
    (root / name / "state" / "_METADATA").write_text("{")
  shutil.copytree(root / "4", root / "10")
  shutil.rmtree(root / "10" / "state")
  assert Checkpointer(str(tmp_path), config).steps() == [2, 4, 10]
  _, meta = _params(str(tmp_path), config)
  assert meta["step"] == 4 and not (root / "10").exists()
  assert [p.name.split(".")[0] for p in (tmp_path / "corrupt_checkpoints").iterdir()] == ["10"]
  config.train.num_steps = 6
  assert train.train_and_evaluate(config, str(tmp_path))["step"] == 6
  state, meta = _params(str(tmp_path), config)
  assert meta["step"] == 6 and _finite(state)
  assert Checkpointer(str(tmp_path), config).steps() == [2, 4, 6]


def test_incompatible_checkpoint_is_refused(tmp_path):
  config = load_config("independent")
  config.train.num_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  written = (tmp_path / "config.json").read_text()
  other = load_config("independent")
  other.model.class_conditional = True
  with pytest.raises(GenfamError, match=r"incompatible config \(model\.class_conditional: False -> True\).*new --workdir"):
    train.train_and_evaluate(other, str(tmp_path))
  assert (tmp_path / "config.json").read_text() == written  # the refused config is not recorded


def test_checkpoint_of_other_shapes_is_refused(tmp_path, monkeypatch):
  """Shapes are compared leaf by leaf, whatever the config keys say."""
  config = load_config("independent")
  config.train.num_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  monkeypatch.setattr(checkpointing, "STRUCTURAL_KEYS", ())
  other = load_config("independent")
  other.model.class_conditional = True
  with pytest.raises(GenfamError, match=r"step 2 .* does not fit this config's train state \(.*->.*new --workdir"):
    train.train_and_evaluate(other, str(tmp_path))
  assert Checkpointer(str(tmp_path), config).steps() == [2]  # refused, not taken for corrupt


@pytest.mark.slow
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


@pytest.mark.slow
def test_cli_unknown_config_key_suggests_the_close_one(tmp_path):
  out = _cli(["--config=configs/independent.py:smoke", "--config.train.num_step=3", f"--workdir={tmp_path}"])
  assert out.returncode == 2
  assert out.stderr.strip() == ("error: unknown config key 'train.num_step': did you mean "
                                "--config.train.num_steps?")


@pytest.mark.slow
def test_cli_missing_dataset_says_how_to_get_it(tmp_path):
  out = _cli(["--config=configs/independent.py:smoke", "--config.data.name=fashion_mnist",
              f"--config.data.source_dir={tmp_path}", f"--workdir={tmp_path / 'run'}"])
  assert out.returncode == 2 and "Traceback" not in out.stderr
  line = out.stderr.strip().splitlines()[-1]
  assert "Fashion-MNIST is not on this machine" in line and "apt-get install -y dataset-fashion-mnist" in line


@pytest.mark.slow
def test_batch_not_divisible_by_devices(tmp_path):
  out = _cli(["--config=configs/independent.py:smoke", "--config.data.batch_size=12", f"--workdir={tmp_path}"],
             env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      "error: batch size 12 does not divide by the 8 devices: set --config.data.batch_size to a multiple of 8")


def test_all_checkpoints_corrupt_is_one_clear_error_and_nothing_is_lost(tmp_path):
  config = load_config("independent")
  config.train.num_steps, config.train.eval_every = 4, 0
  train.train_and_evaluate(config, str(tmp_path))
  steps = Checkpointer(str(tmp_path), config).steps()
  for step in steps:
    for root, _, files in os.walk(tmp_path / "checkpoints" / str(step) / "state"):
      for name in files:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  with pytest.raises(GenfamError, match=r"no checkpoint in .* could be read .*moved to .*corrupt_checkpoints"):
    train.evaluate_workdir(config, str(tmp_path))
  assert sorted(p.name.split(".")[0] for p in (tmp_path / "corrupt_checkpoints").iterdir()) == sorted(map(str, steps))


def test_a_frozen_encoders_workdir_is_compatible_however_it_is_spelled():
  """model.text_encoder_workdir relative or absolute names one directory: not a config change."""
  from genfam.loop.checkpointing import structural_differences
  model = {"latent_dim": 2}
  here = {"model": {**model, "text_encoder_workdir": "runs/clip"}}
  there = {"model": {**model, "text_encoder_workdir": os.path.abspath("runs/clip")}}
  assert structural_differences(here, there) == []
  assert structural_differences(here, {"model": {**model, "text_encoder_workdir": "runs/other"}}) == [
      f"model.text_encoder_workdir: {os.path.realpath('runs/clip')!r} -> {os.path.realpath('runs/other')!r}"]
