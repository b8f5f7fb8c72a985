"""train.malloc_retain_mib: glibc keeps freed memory mapped, so a step's buffers are not faulted in again.

Page faults are counted, not timed: a 48 MiB block malloc'ed, written and freed five times takes
one fault per 4 KiB page each time under glibc's defaults (above its largest mmap threshold, 32 MiB,
every such block is a fresh mmap), and about none after the first once the thresholds are raised.
Each case runs in a fresh process, since the setting lasts for the process.
"""
import os
import subprocess
import sys

import pytest

from genfam.loop import host_memory
from tests.conftest import REPO

BLOCK_MIB = 48
PAGES = BLOCK_MIB << 8   # 4 KiB pages in the block

# Prints the minor page faults of the last 4 of 5 malloc/write/free rounds of a BLOCK_MIB block,
# after `setup` (Python statements) ran.
PROBE = """
import ctypes, resource
{setup}
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = {mib} << 20
for i in range(5):
  if i == 1:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = libc.malloc(size)
  ctypes.memset(block, 1, size)
  libc.free(block)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
"""


def _env_without_tunables() -> dict:
  """This environment without GLIBC_TUNABLES: a child maps fresh memory in 4 KiB pages and starts
  as genfam.main would be started by hand."""
  return {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}


def _faults_per_round(setup: str) -> float:
  code = PROBE.format(setup=setup, mib=BLOCK_MIB)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=_env_without_tunables(), cwd=REPO)
  assert out.returncode == 0, out.stderr[-2000:]
  return float(out.stdout.strip().splitlines()[-1])


def _glibc_with_small_pages() -> bool:
  """glibc (mallopt exists) and transparent huge pages not forced on every mapping, where a 48 MiB
  mapping would fault in 2 MiB at a time and the default case could not be told apart."""
  return host_memory._libc() is not None and host_memory.transparent_huge_pages_mode() != "always"


needs_glibc = pytest.mark.skipif(not _glibc_with_small_pages(),
                                 reason="needs glibc's malloc and 4 KiB pages for fresh mappings")


def test_zero_leaves_glibc_alone():
  assert host_memory.retain_freed_memory(0) is False


@needs_glibc
def test_retained_memory_is_not_faulted_in_again():
  default = _faults_per_round("")
  retained = _faults_per_round("from genfam.loop import host_memory; assert host_memory.retain_freed_memory(1024)")
  assert default > 0.9 * PAGES, default       # every round maps, and faults in, a fresh block
  assert retained < 0.01 * PAGES, retained    # the freed block is reused


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


def test_main_restarts_once_with_huge_pages_where_the_config_asks(tmp_path):
  """genfam.main, started without the tunable, runs with it under train.huge_pages=True (where a
  restart changes anything here) and says so once; under False it neither restarts nor asks."""
  env = _env_without_tunables()
  restarts = host_memory.huge_pages_environment(env) is not None
  for huge_pages in (True, False):
    proc = subprocess.run([sys.executable, "-m", "genfam.main", "--config=configs/independent.py:smoke",
                           f"--workdir={tmp_path / str(huge_pages)}", "--config.train.num_steps=1",
                           "--config.train.progress=False", f"--config.train.huge_pages={huge_pages}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("host memory:")]
    assert len(lines) == 1, proc.stdout
    if host_memory._libc() is None:
      assert lines[0] == "host memory: the C library's own malloc (not glibc)"
      continue
    assert lines[0].startswith("host memory: up to 1024 MiB of freed memory stays mapped"), lines
    huge = huge_pages and restarts
    assert lines[0].endswith("huge pages on request (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)" if huge
                             else "4 KiB pages"), lines


def test_describe_says_what_glibc_keeps():
  if host_memory._libc() is not None:
    assert "glibc's own malloc thresholds (train.malloc_retain_mib=0)" in host_memory.describe(0)
    assert "up to 512 MiB of freed memory stays mapped" in host_memory.describe(512)
