"""Shared test setup: a per-session TFDS data dir and compilation cache, smoke configs."""
import os
import tempfile

# Before JAX is imported. Prepared datasets are shared by every test (and
# subprocess) of a session, and so are compiled programs: the end-to-end tests
# run each smoke config several times (full, first part, resumed part) and the
# CLI tests start fresh processes, which then reuse the compilations.
os.environ.setdefault("GENFAM_DATA_DIR", os.path.join(tempfile.gettempdir(), "genfam-test-data"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "genfam-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402

from genfam.settings import config_files  # noqa: E402

REPO = config_files.REPO


def load_config(name: str, variant: str = "smoke"):
  """configs/<name>.py's get_config(variant) (the smoke variant by default)."""
  return config_files.load(name, variant)


def resume_under(config, workdir: str, key: str, value) -> dict:
  """Trains `config` for 2 steps in `workdir`, then resumes it to step 3 with config key
  'section.name' set to `value` (no --allow_config_change) and returns the changes that resume
  recorded in the workdir's config history."""
  import json
  from genfam.loop import train
  section, name = key.split(".")
  for steps, changed in ((2, False), (3, True)):
    run = config.copy_and_resolve_references()
    run.train.progress, run.train.num_steps, run.sample.num = False, steps, 4
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
