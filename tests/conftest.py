"""Shared test setup: a per-session TFDS data dir and compilation cache, smoke configs."""
import os
import tempfile

# Before JAX is imported. Prepared datasets are shared by every test (and
# subprocess) of a session, and so are compiled programs: the end-to-end tests
# run each smoke config several times (full, first part, resumed part) and the
# CLI tests start fresh processes, which then reuse the compilations. Every
# program is cached, however quick its compilation: the tests compile thousands
# of small ones (eager ops, the without_jit variants), which a second session
# then loads (half the CPU time of caching only those over 0.5 s, on the flow and
# learned-variance tests); both folders outlive the session.
os.environ.setdefault("GENFAM_DATA_DIR", os.path.join(tempfile.gettempdir(), "genfam-test-data"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "genfam-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The tests' cost is mostly XLA compiling small programs, which then run for milliseconds, so
# they compile cheaply: at the backend's optimization level 1 (of 3, the default), and with
# XLA:CPU's older elemental emitters for fusions instead of its MLIR fusion emitters. On the
# AIS and GAN tests with an empty cache level 1 took 125 user-CPU s against 175 at the default
# (165 at level 0, `jax_disable_most_optimizations`, whose slower code costs the AIS chains
# more than it saves); the fast tier, empty cache, -n 2: 713 user-CPU s (6 min 57 s) at level 1,
# 541 (5 min 12 s) at level 1 without the fusion emitters (464 at level 0 without them, where
# two tests' floating-point outcomes change and the VAE's AIS test takes 70 s instead of 9).
# They change code generation, not the computation: every tolerance holds. Subprocesses
# inherit them; XLA_FLAGS that name either keep theirs.
_CHEAP_COMPILATION = {"xla_backend_optimization_level": "1", "xla_cpu_use_fusion_emitters": "false"}
for _flag, _value in _CHEAP_COMPILATION.items():
  if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --{_flag}={_value}").strip()

import pytest  # noqa: E402

from genfam.settings import config_files  # noqa: E402

REPO = config_files.REPO


# Tiers: `pytest -m "not slow" -n 2` is the fast tier (every family's contract and likelihood
# properties, at small shapes); CI runs everything (`pytest -n 2`). Tests marked slow start
# processes, train end to end, inject faults, run several processes, sweeps or notebooks; and
# the eager halves of chex's with/without-jit property tests are slow too (`_EAGER`).
_EAGER = "__without_jit"


@pytest.fixture(scope="session", autouse=True)
def _subprocesses_start_under_the_default_malloc():
  """genfam.main (train.malloc's default, jemalloc where installed) replaces itself once by the
  same command under jemalloc (`host_memory.restart_for`); its subprocesses here start in that
  environment, so each starts Python once. In the test processes only (set here, not at import:
  pytest-xdist's workers themselves keep the malloc they started with). The tests of the restart
  itself start their processes without it (tests/test_host_memory.py, tests/test_benchmark_*.py)."""
  try:
    from genfam.cpu import host_memory
  except ImportError:   # moved: the subprocesses restart as they would by hand
    yield
    return
  environ = host_memory.restart_environment(os.environ, host_memory.DEFAULT_MALLOC, False)
  saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "MALLOC_CONF")}
  if environ is not None:
    os.environ.update({k: environ[k] for k in saved if k in environ})
  yield
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


def _shared_fixture(item) -> bool:
  """Does `item` use a module- or session-scoped fixture of a test file (a trained workdir, a
  compiled step)? (Those of this file serve every module a worker runs.)"""
  here = os.path.abspath(__file__)
  info = getattr(item, "_fixtureinfo", None)
  for defs in (info.name2fixturedefs.values() if info else ()):
    for d in defs:
      code = getattr(d.func, "__code__", None)
      if (d.scope in ("module", "session") and code is not None and code.co_filename != here
          and code.co_filename.startswith(os.path.dirname(here))):
        return True
  return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """Marks the eager property tests slow (`_EAGER`). Puts the slow tests first (in their order
  otherwise): the longest work starts while the other worker takes the many short tests, so
  that two workers end together. And the tests of one file that share a module fixture run on
  one worker (pytest.ini's --dist=loadgroup), which builds the fixture once, instead of on both."""
  for item in items:
    if _EAGER in item.name:
      # The same property as its __with_jit twin (which the fast tier runs), run op by op: each
      # primitive at each shape is a program of its own to compile, 138 of the fast tier's 773
      # seconds on an empty compilation cache (one process, 72 tests), so CI alone runs them.
      item.add_marker(pytest.mark.slow)
    if _shared_fixture(item) and item.get_closest_marker("xdist_group") is None:
      item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def load_config(name: str, variant: str = "smoke"):
  """configs/<name>.py's get_config(variant) (the smoke variant by default)."""
  return config_files.load(name, variant)


def resume_under(config, workdir: str, key: str, value) -> dict:
  """Trains `config` for 2 steps in `workdir` (no test evaluation: train.final_eval=False), then
  resumes it to step 3 with config key 'section.name' set to `value` (no --allow_config_change),
  evaluating at the end, and returns the changes that resume recorded in the workdir's config
  history."""
  import json
  from genfam.loop import train
  section, name = key.split(".")
  for steps, changed in ((2, False), (3, True)):
    run = config.copy_and_resolve_references()
    run.train.progress, run.train.num_steps, run.sample.num = False, steps, 4
    run.train.final_eval = changed
    if changed:
      run[section][name] = value
    assert train.train_and_evaluate(run, workdir)["step"] == steps
  with open(os.path.join(workdir, "config_history.jsonl")) as f:
    return json.loads(f.readlines()[-1])["changes"]


def assert_values_and_gradients_equal(ours, plain, x, kernel, key, apply=lambda f: f, tol=1e-11):
  """ours(x, kernel) equals plain(x, kernel), and so do their input and kernel gradients for a random
  cotangent (float64 in the callers: tolerances of 1e-11). `apply` wraps ours (a chex variant)."""
  import jax
  import numpy as np
  y = apply(ours)(x, kernel)
  np.testing.assert_allclose(y, plain(x, kernel), rtol=tol, atol=tol)
  dy = jax.random.normal(key, y.shape, y.dtype)
  want = jax.vjp(plain, x, kernel)[1](dy)
  got = apply(lambda x, k: jax.vjp(ours, x, k)[1](dy))(x, kernel)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
