"""Shared test fixtures: a per-session TFDS data dir, smoke configs, tiny runs."""
import os
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prepared datasets are shared by every test (and subprocesses) of one session.
os.environ.setdefault("GENFAM_DATA_DIR", os.path.join(tempfile.gettempdir(), "genfam-test-data"))


def load_config(name: str, variant: str = "smoke"):
  """configs/<name>.py's get_config(variant), as the CLI would load it."""
  import importlib.util
  path = os.path.join(REPO, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


@pytest.fixture
def smoke_config():
  return load_config
