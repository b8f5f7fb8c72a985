"""Host memory between steps: a step's freed buffers are not faulted in again.

train.malloc_retain_mib (glibc keeps freed memory mapped) and train.malloc="jemalloc" (genfam.main
restarts with jemalloc preloaded). Page faults are counted, not timed: a 48 MiB block malloc'ed,
written and freed five times takes one fault per 4 KiB page each time under glibc's defaults (above
its largest mmap threshold, 32 MiB, every such block is a fresh mmap), and about none after the
first once the thresholds are raised, or under jemalloc. Each case runs in a fresh process, since
the setting lasts for the process.
"""
import os
import subprocess
import sys

import pytest

from genfam.cpu import host_memory
from tests.conftest import REPO

BLOCK_MIB = 48
PAGES = BLOCK_MIB << 8   # 4 KiB pages in the block

# Prints the minor page faults per round of the last 4 of 5 malloc/write/free rounds of a `mib` MiB
# block, run in the main thread or another one, after `setup` (Python statements) ran.
PROBE = """
import ctypes, resource, threading
{setup}
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = {mib} << 20
faults = []
def rounds():
  for i in range(5):
    if i == 1:
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
  faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
worker = threading.Thread(target=rounds) if {in_thread} else None
worker.start() if worker else rounds()
worker.join() if worker else None
print(faults[0])
"""


def _plain_environment(**extra) -> dict:
  """This environment without GLIBC_TUNABLES, LD_PRELOAD and MALLOC_CONF (which another test of the
  same worker may have left in os.environ), plus `extra`: a child uses glibc's malloc, maps fresh
  memory in 4 KiB pages and starts as genfam.main would be started by hand."""
  return {**{k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_CONF")},
          **extra}


def _faults_per_round(setup: str, **extra_environment) -> float:
  code = PROBE.format(setup=setup, mib=BLOCK_MIB, in_thread=False)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=_plain_environment(**extra_environment), cwd=REPO)
  assert out.returncode == 0, out.stderr[-2000:]
  return float(out.stdout.strip().splitlines()[-1])


def _glibc_with_small_pages() -> bool:
  """glibc (mallopt exists) and transparent huge pages not forced on every mapping, where a 48 MiB
  mapping would fault in 2 MiB at a time and the default case could not be told apart."""
  return host_memory._libc() is not None and host_memory.transparent_huge_pages_mode() != "always"


needs_glibc = pytest.mark.skipif(not _glibc_with_small_pages(),
                                 reason="needs glibc's malloc and 4 KiB pages for fresh mappings")
needs_jemalloc = pytest.mark.skipif(host_memory.jemalloc_library() is None,
                                    reason="needs jemalloc (Debian: libjemalloc2; scripts/setup.sh installs it)")


def test_zero_leaves_glibc_alone():
  assert host_memory.retain_freed_memory(0) is False


@pytest.mark.slow
@needs_glibc
def test_retained_memory_is_not_faulted_in_again():
  default = _faults_per_round("")
  retained = _faults_per_round("from genfam.cpu import host_memory; assert host_memory.retain_freed_memory(1024)")
  assert default > 0.9 * PAGES, default       # every round maps, and faults in, a fresh block
  assert retained < 0.01 * PAGES, retained    # the freed block is reused


@pytest.mark.slow
@needs_glibc
@pytest.mark.parametrize("mib", [1024, 0, None])
def test_a_run_sets_it_from_its_config(mib):
  """None: a config saved before the key existed (a workdir's config.json) gets the default."""
  setting = ("del config.train['malloc_retain_mib']" if mib is None
             else f"config.train.malloc_retain_mib = {mib}")
  setup = ("from genfam.settings import config_files; from genfam.loop import train; import tempfile\n"
           "config = config_files.load('glow', 'smoke')\n"
           f"{setting}\n"
           "train.Run(config, tempfile.mkdtemp())")
  faults = _faults_per_round(setup)
  if mib == 0:
    assert faults > 0.9 * PAGES, faults
  else:
    assert faults < 0.01 * PAGES, faults


# A 96 MiB block, above glibc's 64 MiB per-thread heap, in a thread other than the main one, after
# the thresholds were raised; the first line printed names the malloc in use.
THREAD_PROBE = PROBE.format(setup="from genfam.cpu import host_memory\n"
                                  "host_memory.retain_freed_memory(1024)\n"
                                  "print(host_memory.malloc_in_use())", mib=96, in_thread=True)


@pytest.mark.slow
@needs_glibc
@needs_jemalloc
def test_jemalloc_keeps_what_glibc_maps_fresh():
  """A block glibc's thresholds cannot keep (THREAD_PROBE) is faulted in every round under glibc,
  and about never under jemalloc as genfam.main starts it (restart_environment), which hands the
  freed block to the next request."""
  faults = {}
  for name in ("glibc", "jemalloc"):
    env = host_memory.restart_environment(_plain_environment(), name, False) or _plain_environment()
    out = subprocess.run([sys.executable, "-c", THREAD_PROBE], capture_output=True, text=True, timeout=300,
                         env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    in_use, per_round = out.stdout.split()
    assert in_use == name
    faults[name] = float(per_round)
  pages = 96 << 8
  assert faults["glibc"] > 0.9 * pages, faults
  assert faults["jemalloc"] < 0.01 * pages, faults


def test_restart_environment_preloads_jemalloc_once(monkeypatch):
  lib = "libjemalloc.so.2"
  monkeypatch.setattr(host_memory, "jemalloc_library", lambda: lib)
  monkeypatch.setattr(host_memory, "huge_pages_environment", lambda env: dict(env, HUGE="1"))
  monkeypatch.setattr(host_memory, "transparent_huge_pages_mode", lambda: "madvise")
  conf = "thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1"
  assert host_memory.restart_environment({"A": "1"}, "jemalloc", False) == {
      "A": "1", "LD_PRELOAD": lib, "MALLOC_CONF": conf}
  # Yours kept after ours (your MALLOC_CONF options win: jemalloc reads them in order); huge pages
  # from glibc moot under jemalloc.
  assert host_memory.restart_environment({"LD_PRELOAD": "libx.so", "MALLOC_CONF": "narenas:2"}, "jemalloc", True) == {
      "LD_PRELOAD": f"{lib}:libx.so", "MALLOC_CONF": f"{conf},narenas:2"}
  # Already preloaded (this process has it, or the loader refused it: no second restart).
  assert host_memory.restart_environment({"LD_PRELOAD": f"/usr/lib/{lib}"}, "jemalloc", True) is None
  monkeypatch.setattr(host_memory, "transparent_huge_pages_mode", lambda: "never")   # no thp:always asked
  assert host_memory.restart_environment({}, "jemalloc", False)["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"
  assert host_memory.restart_environment({}, "glibc", False) is None
  assert host_memory.restart_environment({}, "glibc", True) == {"HUGE": "1"}
  monkeypatch.setattr(host_memory, "jemalloc_library", lambda: None)   # missing: glibc's malloc, as asked otherwise
  assert host_memory.restart_environment({}, "jemalloc", True) == {"HUGE": "1"}
  assert host_memory.restart_environment({}, "jemalloc", False) is None


def test_huge_pages_environment_puts_the_tunable_first_once(monkeypatch):
  monkeypatch.setattr(host_memory, "_transparent_huge_pages_on_request", lambda: True)
  if host_memory._libc() is None:
    assert host_memory.huge_pages_environment({}) is None
    return
  version = host_memory._libc().gnu_get_libc_version().decode()
  if tuple(int(p) for p in version.split(".")[:2]) < (2, 35):
    assert host_memory.huge_pages_environment({}) is None     # an older glibc does not know it
    return
  assert host_memory.huge_pages_environment({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  assert host_memory.huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {
      "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.malloc.arena_max=2"}
  assert host_memory.huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None   # yours wins
  monkeypatch.setattr(host_memory, "_transparent_huge_pages_on_request", lambda: False)
  assert host_memory.huge_pages_environment({}) is None


def _host_memory_line(tmp_path, *settings) -> str:
  """The one 'host memory:' line of a one-step genfam.main run started by hand with `settings`, on
  the CPU backend (genfam.main prints the line only there: on a GPU it restarts the same way, but
  host memory is not what a step waits on)."""
  proc = subprocess.run([sys.executable, "-m", "genfam.main", "--config=configs/independent.py:smoke",
                         f"--workdir={tmp_path / '_'.join(settings)}", "--config.train.num_steps=1",
                         "--config.train.progress=False", *settings],
                        cwd=REPO, env=_plain_environment(JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in proc.stdout.splitlines() if line.startswith("host memory:")]
  assert len(lines) == 1, proc.stdout
  return lines[0]


@pytest.mark.slow
def test_main_restarts_once_with_huge_pages_where_the_config_asks(tmp_path):
  """genfam.main on glibc's malloc, started without the tunable, runs with it under
  train.huge_pages=True (where a restart changes anything here) and says so once; under False it
  neither restarts nor asks."""
  restarts = host_memory.huge_pages_environment(_plain_environment()) is not None
  for huge_pages in (True, False):
    line = _host_memory_line(tmp_path, "--config.train.malloc=glibc", f"--config.train.huge_pages={huge_pages}")
    if host_memory._libc() is None:
      assert line == "host memory: the C library's own malloc (not glibc)"
      continue
    assert line.startswith("host memory: up to 1024 MiB of freed memory stays mapped"), line
    huge = huge_pages and restarts
    assert line.endswith("huge pages on request (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)" if huge
                         else "4 KiB pages"), line


@pytest.mark.slow
def test_main_restarts_once_with_jemalloc_by_default(tmp_path):
  """train.malloc's default: genfam.main, started by hand, runs under jemalloc configured as
  jemalloc_conf() says where the library is installed, and otherwise says in its one line that it
  is missing and how to get it."""
  line = _host_memory_line(tmp_path)
  if host_memory.jemalloc_library() is not None:
    assert line == f"host memory: jemalloc (LD_PRELOAD; MALLOC_CONF={host_memory.jemalloc_conf()})", line
  elif host_memory._libc() is not None:
    assert line.startswith("host memory: jemalloc not found (Debian: apt-get install libjemalloc2"), line


def test_describe_says_what_glibc_keeps():
  if host_memory.malloc_in_use() == "glibc":
    assert "glibc's own malloc thresholds (train.malloc_retain_mib=0)" in host_memory.describe(0)
    assert "up to 512 MiB of freed memory stays mapped" in host_memory.describe(512)
