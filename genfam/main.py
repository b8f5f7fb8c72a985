"""genfam's command line: parse flags and config, dispatch train / eval / sample.

  python -m genfam.main --config=configs/glow.py [--config.a.b=value ...] [--workdir=DIR]
                        [--mode=train|eval|sample]

Intentionally short: the work is in `genfam.loop.train`.
"""
import difflib
import errno
import os
import re
import signal
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from genfam.errors import GenfamError
from genfam.loop import workdir as workdir_guard
from genfam.loop.workdir import Preempted
from genfam.settings import config_files

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/<name>.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>[_<variant>]).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do with the workdir.")
_OUT = flags.DEFINE_string("out", "", "--mode=sample: where to write the PNG; a relative path is in the workdir "
                           "(default: WORKDIR/samples_step_<step>.png), an absolute one stays as it is.")
_CAPTION = flags.DEFINE_string(
    "caption", None, "--mode=sample: a sentence every sample is conditioned on (caption-conditional models only, "
    "e.g. configs/ddpm.py:caption or configs/gan.py:caption; words from the caption vocabulary, unknown words "
    "are reported).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process run: HOST:PORT of process 0's coordinator (or "
    "$JAX_COORDINATOR_ADDRESS); every process gets the same value.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process run: how many processes in all.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process run: this process's index, 0..N-1.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run that JAX detects itself (TPU pod slice, SLURM, Open MPI).")
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "Seconds to wait for every process of a multi-process run to join.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a run with changed config keys beyond the step count, cadences, "
    "evaluation and sampling (the change and its step are recorded in WORKDIR/config_history.jsonl).")


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", name + (f"_{variant}" if variant else ""))


def join_processes() -> None:
  """jax.distributed.initialize from the flags, the standard environment or auto-detection;
  a process that cannot join within --distributed_timeout gets one line, not a hang."""
  address = _COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if not (address or _NUM_PROCESSES.value or _DISTRIBUTED.value):
    return
  if address and _PROCESS_ID.value:  # XLA aborts the process when it cannot connect: look first
    _wait_for_coordinator(address, _DISTRIBUTED_TIMEOUT.value)
  import jax
  try:
    jax.distributed.initialize(coordinator_address=address, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value, initialization_timeout=_DISTRIBUTED_TIMEOUT.value)
  except Exception as e:  # noqa: BLE001 - JAX raises several kinds; one line with the fix
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise GenfamError(f"process {_PROCESS_ID.value} of {_NUM_PROCESSES.value} could not join the multi-process "
                      f"run at {address} within {_DISTRIBUTED_TIMEOUT.value} s ({first}): start every process "
                      f"with the same --coordinator_address and --num_processes, and check that process 0 "
                      f"runs and its address is reachable") from None


def _wait_for_coordinator(address: str, timeout: float) -> None:
  """Waits until HOST:PORT accepts a TCP connection; a one-line GenfamError after `timeout` s."""
  import socket
  import time
  host, _, port = address.rpartition(":")
  deadline = time.time() + timeout
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
        return
    except (OSError, ValueError) as e:
      if time.time() >= deadline:
        raise GenfamError(f"process {_PROCESS_ID.value} of {_NUM_PROCESSES.value} could not join the multi-process "
                          f"run at {address} within {timeout} s ({e}): start process 0 first (or with it), give "
                          f"every process the same --coordinator_address and --num_processes, and check that the "
                          f"address is reachable from here") from None
      time.sleep(0.5)


def refuse_early(config, workdir: str, mode: str) -> None:
  """The refusals that need neither JAX nor the data, before anything is created: the config's
  values (`config_checks`), and for --mode=eval and sample a workdir without checkpoints."""
  from genfam.settings import config_checks
  config_checks.check(config)
  if mode in ("eval", "sample"):
    workdir_guard.require_checkpoint(workdir)


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file it writes at INFO
  config = _CONFIG.value
  workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  refuse_early(config, workdir, _MODE.value)
  from genfam.cpu import host_memory, xla_cpu
  # Before JAX starts: the loader reads LD_PRELOAD, and glibc its tunables, only at start.
  host_memory.restart_for(config.train.malloc, config.train.huge_pages)
  xla_flags = xla_cpu.add_xla_cpu_flags(config.train.xla_cpu_flags)
  cpu_devices = xla_cpu.set_cpu_devices(config.train.cpu_devices,
                                        config.data.batch_size // max(_NUM_PROCESSES.value or 1, 1))
  join_processes()
  import jax
  from genfam.loop import train
  if jax.default_backend() == "cpu" and jax.local_device_count() > 1:
    how = (f"train.cpu_devices={config.train.cpu_devices}" if cpu_devices is not None
           else "XLA_FLAGS' --xla_force_host_platform_device_count")
    print(f"CPU: {jax.local_device_count()} data-parallel devices ({how}; "
          f"{xla_cpu.usable_cores()} usable cores)", flush=True)
  if jax.default_backend() == "cpu" and xla_flags:
    print(f"XLA:CPU flags: {xla_flags} (train.xla_cpu_flags)", flush=True)
  if jax.default_backend() == "cpu":
    print(host_memory.describe(config.train.malloc_retain_mib, config.train.malloc), flush=True)
  # A command refused on the way (a GenfamError before its work starts) leaves nothing behind;
  # one that starts is recorded in WORKDIR/commands.txt (every command that ran, for the results table).
  with workdir_guard.RefusalLeavesNothing(workdir, primary=jax.process_index() == 0) as guard:
    command = " ".join(["python -m genfam.main", *sys.argv[1:]])
    on_start = lambda: guard.start(command)  # noqa: E731
    if _MODE.value == "train":
      train.train_and_evaluate(config, workdir, allow_config_change=_ALLOW_CONFIG_CHANGE.value, on_start=on_start)
    elif _MODE.value == "eval":
      train.evaluate_workdir(config, workdir, on_start=on_start)
    else:
      train.sample_workdir(config, workdir, _OUT.value, caption=_CAPTION.value, on_start=on_start)


def _config_key_error(argv) -> str | None:
  """If the config file or its variant does not exist, or a --config.KEY override names no
  key of the config, a one-line error saying so."""
  config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if config_arg is None and "--config" in argv[:-1]:  # --config FILE
    config_arg = argv[argv.index("--config") + 1]
  if config_arg is None:
    return None
  path, _, variant = config_arg.partition(":")
  if not os.path.isfile(path):
    found = sorted(os.listdir("configs")) if os.path.isdir("configs") else []
    return (f"config file {path!r} does not exist: give --config=configs/<name>.py"
            + (f" (here: {', '.join(f[:-3] for f in found if f.endswith('.py'))})" if found else ""))
  try:
    config = config_files.load(path, variant)
  except ValueError as e:  # a config file names its variants when given another
    return _variant_error(path, variant, e) if variant and repr(variant) in str(e) else None
  except Exception:  # noqa: BLE001 - absl reports a bad config file itself
    return None
  known = config_files.flatten(config)
  for arg in argv:
    if arg.startswith("--config.") and "=" in arg:
      key, value = arg[len("--config."):].split("=", 1)
      if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean --config.{close[0]}?" if close else "see the config file for its keys"
        return f"unknown config key {key!r}: {hint}"
      problem = _type_error(key, value, known[key])
      if problem:
        return problem
  return None


def _variant_error(path: str, variant: str, error: ValueError) -> str:
  """The config file's own message for an unknown variant (it names those that exist), and the
  closest of them."""
  message = str(error).strip().splitlines()[0]
  names = [n for n in re.findall(r"'([^']*)'", message) if n and n != variant]
  close = difflib.get_close_matches(variant, names, n=1)
  return message + (f": did you mean --config={path}:{close[0]}?" if close else "")


def _type_error(key: str, text: str, default) -> str | None:
  """A one-line error if `text` does not parse as the type of the key's default value."""
  kinds = {bool: ("true or false", lambda t: t.lower() in ("true", "false", "1", "0")),
           int: ("an integer", lambda t: t.lstrip("+-").isdigit()),
           float: ("a number", lambda t: _is_float(t))}
  for kind, (name, ok) in kinds.items():
    if type(default) is kind:
      return None if ok(text.strip()) else f"--config.{key}={text!r} is not {name}: give {name}"
  return None


def _is_float(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def run():
  problem = _config_key_error(sys.argv[1:])
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    sys.exit(2)
  try:
    app.run(main)
  except GenfamError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except OSError as e:
    if e.errno not in _WRITE_ERRNOS:
      raise
    print(f"error: cannot write {e.filename or 'to the workdir'}: {e.strerror}; the last good checkpoint is "
          f"kept: free space or make the workdir writable (or use another --workdir) and rerun the same command",
          file=sys.stderr)
    sys.exit(2)
  except Preempted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(128 + signal.SIGTERM)  # what a process killed by SIGTERM reports; the run is resumable


if __name__ == "__main__":
  run()
