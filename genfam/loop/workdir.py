"""What guards a run's workdir: one run at a time, an honest config record, preemption.

- `lock(workdir)`: an OS-level lock (fcntl.flock) on WORKDIR/.genfam.lock, held
  while a run trains. The kernel drops it when the process dies, however it
  dies, so a killed run never leaves it stuck; a second run in the same
  workdir gets one line naming the running one (pid, host, start time).
- `config_changes(saved, current)`: on resume, the keys that differ from the
  config of the checkpoint. Keys that only extend or observe the run
  (OBSERVING_KEYS: the step count, cadences, evaluation and sampling) may
  change and are logged; any other change is refused unless the user passes
  --allow_config_change, and then it is recorded with its step in
  WORKDIR/config_history.jsonl. config.json keeps the config the run started
  with; it is never overwritten.
- `Preemption`: SIGTERM (what TPU and cloud preemption send) asks the loop to
  save a checkpoint at the current step and stop cleanly.
"""
import contextlib
import datetime
import fcntl
import json
import os
import signal
import socket

from genfam.errors import GenfamError
from genfam.settings import config_files

LOCK_FILE = ".genfam.lock"
HISTORY_FILE = "config_history.jsonl"

# Keys (or prefixes, ending in '.') that only extend or observe a run: changing them on resume
# changes neither the model, nor the data, nor the optimisation of the steps already taken.
OBSERVING_KEYS = ("train.num_steps", "train.log_every", "train.eval_every", "train.eval_examples",
                  "train.checkpoint_every", "train.keep_checkpoints", "train.sample_every", "train.progress",
                  "train.max_train_seconds", "train.max_consecutive_nonfinite", "eval.", "sample.",
                  "data.data_dir", "data.allow_download",
                  "train.cpu_devices", "train.xla_cpu_flags",  # the same steps on another device split: equal up to float summation order
                  "train.malloc_retain_mib", "train.huge_pages", "train.malloc",  # where host memory comes from, not what is computed in it
                  "model.query_block",  # attention in other query blocks: the same function, equal up to float rounding
                  "diffusion.vlb_chunk")  # timesteps per network call in the bound: the same values


class Preempted(Exception):
  """The run received SIGTERM, saved a checkpoint at `step` and stopped; rerun to continue."""

  def __init__(self, step: int, workdir: str):
    super().__init__(f"preempted (SIGTERM) at step {step}: checkpoint saved in {workdir}; "
                     f"rerun the same command to continue")
    self.step = step


@contextlib.contextmanager
def lock(workdir: str, process_index: int = 0, process_count: int = 1):
  """Holds WORKDIR's run lock; raises GenfamError at once if another process holds it.
  Each process of a multi-process run holds its own (WORKDIR/.genfam.lock.<index>)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE + (f".{process_index}" if process_count > 1 else ""))
  f = open(path, "a+")
  try:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      raise GenfamError(f"workdir {workdir} is in use by a running run ({holder}): wait for it to finish, "
                        f"stop it, or use another --workdir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    f.flush()
    yield
  finally:
    f.close()  # closing the file releases the lock


def _observing(key: str) -> bool:
  return any(key == k or (k.endswith(".") and key.startswith(k)) for k in OBSERVING_KEYS)


def config_changes(saved: dict, current: dict) -> tuple[dict, dict]:
  """-> (observing, other): {key: [old, new]} of the keys whose values differ
  (`config_files.drift`; a key missing on one side has the value None there)."""
  none = lambda v: None if v is config_files.MISSING else v  # noqa: E731
  # A key the saved config lacks, now at a neutral value (0, '', False, None), is a key added to
  # genfam since the run started with the behaviour it had before: not a change of the run.
  diffs = {k: [none(old), none(new)] for k, (old, new) in config_files.drift(saved, current).items()
           if none(old) != none(new) and not (old is config_files.MISSING and not new)}
  observing = {k: v for k, v in diffs.items() if _observing(k)}
  return observing, {k: v for k, v in diffs.items() if k not in observing}


def describe_changes(changes: dict) -> str:
  return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())


def check_resume_config(workdir: str, saved: dict, current: dict, step: int, allow_change: bool,
                        record: bool = True) -> None:
  """Refuses a resume whose config changes more than OBSERVING_KEYS (unless allowed);
  prints and (if `record`: process 0) records every change with its step in
  WORKDIR/config_history.jsonl."""
  observing, other = config_changes(saved, current)
  if other and not allow_change:
    raise GenfamError(f"the run in {workdir} was trained to step {step} with another config "
                      f"({describe_changes(other)}): rerun with the values it was trained with, use a new "
                      f"--workdir, or pass --allow_config_change to change them from step {step} on (recorded)")
  if observing or other:
    print(f"config changed at step {step}: {describe_changes({**observing, **other})}", flush=True)
    if not record:
      return
    entry = {"step": step, "time": datetime.datetime.now().isoformat(timespec="seconds"),
             "changes": {**observing, **other}, "allowed_by_flag": bool(other)}
    with open(os.path.join(workdir, HISTORY_FILE), "a") as f:
      f.write(json.dumps(entry) + "\n")


class Preemption:
  """While active, SIGTERM sets `requested` instead of killing the process (main thread only)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave SIGTERM as it is
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False
