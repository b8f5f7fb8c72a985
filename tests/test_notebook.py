"""notebooks/inspect_run.ipynb executes on a smoke workdir."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

from genfam.loop import train
from tests.conftest import REPO, load_config

pytestmark = pytest.mark.slow  # a Jupyter kernel


def test_inspect_run_notebook_executes(tmp_path, monkeypatch):
  train.train_and_evaluate(load_config("independent"), str(tmp_path / "run"))
  monkeypatch.setenv("GENFAM_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  nb = nbformat.read(os.path.join(REPO, "notebooks", "inspect_run.ipynb"), as_version=4)
  NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
  outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
  assert "exact:" in outputs and "bits/dim over 64 test examples (17 bins)" in outputs
