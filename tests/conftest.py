"""Shared test fixtures: a per-session TFDS data dir, smoke configs, tiny runs."""
import os
import tempfile

import pytest

from genfam import config_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prepared datasets are shared by every test (and subprocesses) of one session.
os.environ.setdefault("GENFAM_DATA_DIR", os.path.join(tempfile.gettempdir(), "genfam-test-data"))


def load_config(name: str, variant: str = "smoke"):
  """configs/<name>.py's get_config(variant) (the smoke variant by default)."""
  return config_files.load(name, variant)


@pytest.fixture
def smoke_config():
  return load_config
