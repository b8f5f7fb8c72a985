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
