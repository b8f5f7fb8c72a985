"""Host memory between steps: keep the memory XLA frees mapped, so the next step does not fault it in again.

XLA:CPU allocates each execution's temporary buffers with malloc (35 MiB per device for Glow's
training step, 271 MiB for DDPM's) and frees them when the execution ends. glibc's malloc serves
a request above its mmap threshold (128 KiB at start, raised by each such free up to 32 MiB) with
fresh pages from mmap and unmaps them on free, and gives a free heap top larger than its trim
threshold back to the kernel. Either way the next step's buffers are new pages: the kernel zeroes
and maps each 4 KiB page on first touch. On two CPU devices Glow's step took 18,200 such page
faults and 32 ms of kernel time per 80 ms step, the VAE's 27,900 (README, "Page faults between
steps").

`retain_freed_memory(mib)` raises both thresholds (glibc's `mallopt`), so allocations up to `mib`
MiB come from the heap and up to `mib` MiB of freed heap stay mapped: the next step reuses them.
It changes where memory comes from, never a value computed in it. The process keeps its peak heap
as resident memory between steps.

What the thresholds cannot reach: a buffer larger than 64 MiB requested from a thread other than the
main one, which glibc always maps fresh and unmaps on free (DDPM's and RealNVP's per-device buffers,
Glow's at width 128 and batch 64: 67,800-138,700 faults per step either way). For those configs
(`train.huge_pages`), `restart_for` (genfam.main, before JAX starts) restarts the process
once with glibc's `glibc.malloc.hugetlb=1` tunable, which glibc reads only at start: it asks the
kernel for transparent huge pages on what it maps, so such a buffer is faulted in 2 MiB at a time
instead of 4 KiB. It is per config because it costs the configs whose buffers stay mapped anyway:
with huge pages on the heap too, Glow's and the VAE's steps were no faster, or slower (README, "Page
faults between steps").

A third way reaches those buffers too: another allocator. jemalloc (Debian's libjemalloc2) run with
`MALLOC_CONF` keeps what it frees, of any size and from any thread, for the next request
(`dirty_decay_ms:-1,muzzy_decay_ms:-1`: never handed back to the kernel), and asks for transparent
huge pages on what it maps (`thp:always`), so a step's buffers are neither faulted in nor zeroed
again, and are still backed by huge pages (DDPM: 0-11 page faults and 5-12 ms of kernel time per
step, against 1,200-1,700 faults and 0.09-0.16 s with glibc's huge pages; README, "jemalloc instead
of glibc's malloc"). It costs resident memory: nothing freed goes back (4.3-4.4 GiB against 2.6-2.7
for a benchmark process that ran DDPM, RealNVP, Glow and the image-GPT in turn). `train.malloc="jemalloc"` (the default) makes genfam.main restart once, before JAX
starts, with the library in LD_PRELOAD (the only way to replace malloc in a process) and that
configuration in MALLOC_CONF; where the library is missing it says so in one line and stays on
glibc's malloc with the two settings above. Under jemalloc those two settings do nothing.
"""
import ctypes
import ctypes.util
import functools
import os
import sys

# train.malloc_retain_mib's default: above every step's buffers here (DDPM's 271 MiB per device).
DEFAULT_MIB = 1024
# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


@functools.cache
def _libc():
  """The C library's handle when it is glibc (it has mallopt and gnu_get_libc_version), else None."""
  try:
    libc = ctypes.CDLL(None)
  except OSError:
    return None
  if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
    return None
  libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
  libc.mallopt.restype = ctypes.c_int
  libc.gnu_get_libc_version.restype = ctypes.c_char_p
  return libc


def retain_freed_memory(mib: int) -> bool:
  """Sets glibc's mmap threshold and trim threshold to `mib` MiB for the rest of the process.

  Returns True when both took effect; False when `mib` is 0 (glibc's defaults stay), when the C
  library is not glibc (macOS, musl: nothing to do), or when glibc refused the value. Call it
  before the steps it should serve: buffers glibc already unmapped or trimmed are not brought back.
  """
  if mib <= 0:
    return False
  libc = _libc()
  if libc is None:
    return False
  value = min(int(mib), 2**31 - 1 >> 20) << 20
  return bool(libc.mallopt(M_MMAP_THRESHOLD, value)) and bool(libc.mallopt(M_TRIM_THRESHOLD, value))


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def transparent_huge_pages_mode() -> str | None:
  """The kernel's transparent huge page mode: 'always' (every large mapping gets them), 'madvise'
  (memory that asks for them does), 'never', or None where it cannot be read."""
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      text = f.read()
  except OSError:
    return None
  return next((m for m in ("always", "madvise", "never") if f"[{m}]" in text), None)


def _transparent_huge_pages_on_request() -> bool:
  return transparent_huge_pages_mode() == "madvise"


def huge_pages_environment(environ) -> dict | None:
  """`environ` with HUGE_PAGES_TUNABLE put first in GLIBC_TUNABLES, or None when a restart would
  change nothing: not glibc 2.35 or later (older ones do not know the tunable), the kernel's
  transparent huge pages not on request, or GLIBC_TUNABLES already setting glibc.malloc.hugetlb."""
  libc = _libc()
  if libc is None or not _transparent_huge_pages_on_request():
    return None
  major, minor = (int(p) for p in libc.gnu_get_libc_version().decode().split(".")[:2])
  tunables = environ.get("GLIBC_TUNABLES", "")
  if (major, minor) < (2, 35) or "glibc.malloc.hugetlb" in tunables:
    return None
  return dict(environ, GLIBC_TUNABLES=":".join(t for t in (HUGE_PAGES_TUNABLE, tunables) if t))


JEMALLOC = "jemalloc"   # libjemalloc.so.2
MALLOC_CHOICES = ("jemalloc", "glibc")
DEFAULT_MALLOC = "jemalloc"   # train.malloc's default, also for a config saved before the key existed
# Freed memory is never purged (kept for the next step); what jemalloc maps asks for huge pages.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
JEMALLOC_HUGE_PAGES = "thp:always"


@functools.cache
def jemalloc_library() -> str | None:
  """jemalloc's shared library as the dynamic loader finds it (e.g. 'libjemalloc.so.2'), or None."""
  return ctypes.util.find_library(JEMALLOC)


def _preloads(environ) -> list[str]:
  return [p for p in environ.get("LD_PRELOAD", "").replace(" ", ":").split(":") if p]


def jemalloc_conf() -> str:
  """The MALLOC_CONF genfam gives jemalloc: JEMALLOC_CONF, and JEMALLOC_HUGE_PAGES where the kernel
  gives transparent huge pages on request or always."""
  huge = transparent_huge_pages_mode() in ("madvise", "always")
  return ",".join([JEMALLOC_HUGE_PAGES] * huge + [JEMALLOC_CONF])


def malloc_for(malloc: str) -> str:
  """The malloc genfam.main runs a config with `train.malloc=malloc` under: 'jemalloc' where it
  asks for it and the library is installed, else 'glibc'."""
  return "jemalloc" if malloc == "jemalloc" and jemalloc_library() is not None else "glibc"


def restart_environment(environ, malloc: str, huge_pages: bool) -> dict | None:
  """The environment genfam.main restarts in for a config's `train.malloc` and `train.huge_pages`,
  or None when a restart would change nothing.

  malloc="jemalloc", library found: `jemalloc_library()` put first in LD_PRELOAD and `jemalloc_conf()`
  first in MALLOC_CONF (jemalloc reads its options in order, so a user's own MALLOC_CONF, kept after,
  wins), unless LD_PRELOAD names a jemalloc already (then this process has it, or the loader refused
  it once: no second try). glibc's huge-page tunable is then moot. Otherwise (malloc="glibc", or
  jemalloc missing) that tunable where `huge_pages` asks (`huge_pages_environment`).
  """
  if malloc_for(malloc) == "jemalloc":
    preloads = _preloads(environ)
    if any("jemalloc" in os.path.basename(p) for p in preloads):
      return None
    conf = ",".join(c for c in (jemalloc_conf(), environ.get("MALLOC_CONF", "")) if c)
    return dict(environ, LD_PRELOAD=":".join([jemalloc_library(), *preloads]), MALLOC_CONF=conf)
  return huge_pages_environment(environ) if huge_pages else None


def restart_for(malloc: str, huge_pages: bool) -> None:
  """Replaces this process by the same command (`sys.orig_argv`) in `restart_environment`'s
  environment, when that changes something; returns only when it does not. Call it before anything
  is started that a restart would lose: threads, open workdirs, JAX's backend."""
  environ = restart_environment(os.environ, malloc, huge_pages)
  if environ is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, environ)


def restart_for_configs(configs) -> None:
  """`restart_for` under the train.malloc and train.huge_pages that `configs` (a tool's several
  runs) share, as genfam.main would start each; nothing where their mallocs differ, since one
  process has one malloc. A config saved before a key existed gets its default."""
  mallocs = {c.train.get("malloc", DEFAULT_MALLOC) for c in configs}
  huge_pages = {c.train.get("huge_pages", False) for c in configs}
  if len(mallocs) == 1:
    restart_for(mallocs.pop(), huge_pages == {True})


def malloc_in_use() -> str:
  """Which malloc serves this process: 'jemalloc' or 'tcmalloc' (mapped into it, so preloaded: it
  then owns malloc), 'glibc', or 'other' (another C library's)."""
  try:
    with open("/proc/self/maps") as f:
      maps = f.read()
  except OSError:
    maps = ""
  for name in ("jemalloc", "tcmalloc"):
    if f"lib{name}" in maps:
      return name
  return "glibc" if _libc() is not None else "other"


def huge_pages_on() -> bool:
  """Whether this process started with glibc's huge-page tunable on."""
  return HUGE_PAGES_TUNABLE in os.environ.get("GLIBC_TUNABLES", "").split(":")


def describe(mib: int, malloc: str = "glibc") -> str:
  """One line on what this process does with freed host memory, for the run's log; `malloc` is
  the config's train.malloc (what was asked for)."""
  in_use = malloc_in_use()
  if in_use in ("jemalloc", "tcmalloc"):
    conf = f"; MALLOC_CONF={os.environ['MALLOC_CONF']}" if in_use == "jemalloc" and os.environ.get("MALLOC_CONF") else ""
    return f"host memory: {in_use} (LD_PRELOAD{conf})"
  if in_use == "other":
    return "host memory: the C library's own malloc (not glibc)"
  missing = ("jemalloc not found (Debian: apt-get install libjemalloc2, as scripts/setup.sh does; "
             "or train.malloc=glibc), so glibc's malloc: " if malloc == "jemalloc" else "")
  kept = (f"up to {mib} MiB of freed memory stays mapped (train.malloc_retain_mib)" if mib
          else "glibc's own malloc thresholds (train.malloc_retain_mib=0)")
  pages = "huge pages on request (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)" if huge_pages_on() else "4 KiB pages"
  return f"host memory: {missing}{kept}; {pages}"
