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
- `RefusalLeavesNothing`: a command refused before its work starts (a GenfamError)
  leaves the workdir as it found it, and a new workdir is not left behind; a command
  is recorded in WORKDIR/commands.txt only once it starts.
- `require_checkpoint(workdir)`: --mode=eval and sample refuse a workdir without
  checkpoints before anything is created.
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
COMMANDS_FILE = "commands.txt"
CHECKPOINTS = "checkpoints"  # the checkpoints' folder in a workdir (genfam.loop.checkpointing)

# Keys (or prefixes, ending in '.') that only extend or observe a run: changing them on resume
# changes neither the model, nor the data, nor the optimisation of the steps already taken.
OBSERVING_KEYS = ("train.num_steps", "train.log_every", "train.eval_every", "train.eval_examples",
                  "train.checkpoint_every", "train.keep_checkpoints", "train.sample_every", "train.progress",
                  "train.max_train_seconds", "train.max_consecutive_nonfinite", "train.final_eval", "eval.", "sample.",
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


def require_checkpoint(workdir: str) -> None:
  """Raises GenfamError unless WORKDIR/checkpoints holds a saved step (a folder named by its
  step number: orbax's half-written temporary folders do not count). Reads, creates nothing."""
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINTS)
  if not (os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))):
    raise GenfamError(f"no checkpoint in {directory}: train first with "
                      f"`python -m genfam.main --config=... --workdir={workdir}`")


def _held_by_another(path: str) -> bool:
  """Whether a running process holds the run lock file `path`."""
  try:
    with open(path, "a") as f:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return True
  except OSError:
    return False
  return False


class RefusalLeavesNothing:
  """`with RefusalLeavesNothing(workdir) as guard:` around a command; `guard.start()` when its
  checks have passed and its work begins.

  A GenfamError before `start` is a refused command (a config, checkpoint or condition that
  does not fit, a workdir in use): what the command added is removed, so that nothing new
  remains: the run lock files and an empty checkpoints folder it created, then the workdir
  and the folders above it if it created them (each only if empty: nothing with content is
  deleted). Nothing is touched while another process holds the workdir's lock. A GenfamError
  after `start` (e.g. non-finite steps) leaves everything: the run's files are its record.
  `start(command)` records the command in WORKDIR/commands.txt (if `primary`).
  """

  def __init__(self, workdir: str, primary: bool = True):
    self.workdir, self.primary, self.started = os.path.abspath(workdir), primary, False
    self.created = []  # the folders this command creates, the workdir first, while they do not exist
    path = self.workdir
    while not os.path.exists(path) and os.path.dirname(path) != path:
      self.created.append(path)
      path = os.path.dirname(path)
    self.existing = set() if self.created else set(os.listdir(self.workdir))

  def __enter__(self):
    return self

  def start(self, command: str = "") -> None:
    """The command passed its checks: records it (`command`, one line) in WORKDIR/commands.txt."""
    self.started = True
    if self.primary and command:
      os.makedirs(self.workdir, exist_ok=True)
      with open(os.path.join(self.workdir, COMMANDS_FILE), "a") as f:  # every command that ran, for the results table
        f.write(command + "\n")

  def __exit__(self, kind, error, traceback):
    if kind is not None and issubclass(kind, GenfamError) and not self.started:
      self.undo()
    return False

  def undo(self) -> None:
    """Removes what a refused command added (see the class)."""
    if not os.path.isdir(self.workdir):
      return
    new = sorted(set(os.listdir(self.workdir)) - self.existing)
    locks = [n for n in os.listdir(self.workdir) if n.startswith(LOCK_FILE)]
    if any(_held_by_another(os.path.join(self.workdir, n)) for n in locks):
      return  # another run works here: what is new may be its
    for name in new:
      path = os.path.join(self.workdir, name)
      try:
        if name.startswith(LOCK_FILE):
          os.remove(path)
        elif name == CHECKPOINTS and os.path.isdir(path):
          os.rmdir(path)  # only if empty
      except OSError:
        pass
    for path in self.created:  # the workdir, then the folders above it that this command created
      try:
        os.rmdir(path)  # only if empty
      except OSError:
        break


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
