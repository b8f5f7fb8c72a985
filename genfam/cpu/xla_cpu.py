"""What genfam sets before XLA:CPU starts: the CPU's split into data-parallel devices, and XLA:CPU flags.

Platform tuning (DESIGN.md, "Scale"): XLA:CPU runs each operation of these models' sizes on
about one thread, so a CPU is split into one data-parallel device per usable core
(`train.cpu_devices`); XLA:CPU flags (`train.xla_cpu_flags`) are opt-in. `genfam.main` calls
both before JAX starts a backend; GPU and TPU backends are untouched.
"""
import os

import jax

from genfam.errors import GenfamError


def usable_cores() -> int:
  """CPU cores this process may run on (its affinity mask: `taskset` counts)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


MIN_ROWS_PER_CPU_DEVICE = 8  # a guard against per-operation overheads on many-core CPUs, not a measured optimum


def cpu_device_count(requested: int, batch_size: int, cores: int) -> int:
  """Data-parallel devices to split the CPU into: `requested` if > 0, else (0) one per
  usable core, lowered to the largest count that divides this process's batch into
  parts of at least MIN_ROWS_PER_CPU_DEVICE rows (1 if none does)."""
  if requested < 0:
    raise GenfamError(f"train.cpu_devices={requested} is negative: use 0 (one per usable core) or a count >= 1")
  if requested:
    return requested
  return max(d for d in range(1, max(cores, 1) + 1)
             if d == 1 or (batch_size % d == 0 and batch_size // d >= MIN_ROWS_PER_CPU_DEVICE))


def set_cpu_devices(requested: int, batch_size: int) -> int | None:
  """Splits the CPU backend into cpu_device_count(...) devices: XLA:CPU runs each operation of
  these models' sizes on about one thread, so one device per core is what uses every core
  (DESIGN.md, "Scale"). Must run before JAX starts a backend; GPU and TPU backends are
  untouched. Returns the count, or None where XLA_FLAGS' --xla_force_host_platform_device_count
  already decides (the user's setting wins)."""
  if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return None
  count = cpu_device_count(requested, batch_size, usable_cores())
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError as e:  # a backend already runs (JAX was used earlier in this process)
    if len(jax.devices("cpu")) != count:
      raise GenfamError(f"train.cpu_devices asks for {count} CPU devices but JAX already started with "
                        f"{len(jax.devices('cpu'))} in this process ({str(e).splitlines()[0][:80]}): set it before "
                        f"any JAX computation, as genfam.main does") from None
  return count


def accepted_xla_flags(flags: str, timeout: float = 120.0) -> tuple[bool, str]:
  """(True, '') if a fresh process with `flags` added to XLA_FLAGS starts JAX's CPU backend;
  else (False, why). XLA aborts a process at an unknown flag, so a flag is tried in a child."""
  import subprocess
  import sys
  env = dict(os.environ, XLA_FLAGS=f"{flags} {os.environ.get('XLA_FLAGS', '')}".strip(), JAX_PLATFORMS="cpu")
  try:
    proc = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True,
                          text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return False, f"a process with them did not start within {timeout:g} s"
  lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
  return proc.returncode == 0, (lines[-1][:200] if lines else f"exit status {proc.returncode}")


def add_xla_cpu_flags(flags: str) -> str | None:
  """Adds XLA:CPU `flags` (a config's train.xla_cpu_flags) in front of XLA_FLAGS, so that the
  user's own flags, read later, win. Must run before JAX starts a backend; only the CPU backend
  reads xla_cpu_* flags. Flags this jaxlib does not know (XLA would abort the process) are
  left out with a one-line warning. Returns the flags added, or None."""
  flags = " ".join(f for f in flags.split() if f.split("=")[0] not in os.environ.get("XLA_FLAGS", ""))
  if not flags:
    return None
  ok, why = accepted_xla_flags(flags)
  if not ok:
    print(f"warning: train.xla_cpu_flags={flags!r} left out: this jaxlib does not start with them ({why}); "
          f"set --config.train.xla_cpu_flags='' to silence this", flush=True)
    return None
  os.environ["XLA_FLAGS"] = f"{flags} {os.environ.get('XLA_FLAGS', '')}".strip()
  return flags
