"""A non-editable install runs from any directory: `pip install .` of genfam (into a target
directory here, with the test environment's dependencies) and, from a directory that is not
the repository, the main job's smoke config (configs/glow.py:smoke) and a caption-conditional
smoke config (configs/ddpm.py:caption_smoke) whose frozen CLIP text encoder comes from a
configs/clip.py:smoke run made the same way. Nothing of the repository is read but the config
files named on the command line: a frozen model is restored from its workdir's config.json."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _install(tmp_path) -> str:
  """genfam installed (not editable) into a directory of tmp_path; -> that directory. Built from a
  copy of the source, so the build leaves nothing in the repository: `pip install --target` where
  this environment can build a wheel, else (no `wheel` package, as on a bare Debian Python) the
  package files as setuptools' build puts them in place (build_py: what the wheel would hold)."""
  source, site = tmp_path / "source", tmp_path / "site"
  shutil.copytree(os.path.join(REPO, "genfam"), source / "genfam", ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(os.path.join(REPO, "setup.py"), source / "setup.py")
  try:
    import wheel  # noqa: F401 - setuptools' bdist_wheel, which pip needs to install from source
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--target", str(site), str(source)], check=True, timeout=600)
  except ImportError:
    subprocess.run([sys.executable, "setup.py", "-q", "build", f"--build-base={tmp_path / 'build'}"], cwd=source,
                   check=True, timeout=600, capture_output=True)
    shutil.copytree(tmp_path / "build" / "lib", site)
  assert (site / "genfam" / "main.py").exists() and not (site / "configs").exists()
  return str(site)


def _run(args, site, cwd, timeout=900):
  env = dict(os.environ, PYTHONPATH=site, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
  return proc.stdout


@pytest.mark.slow
def test_an_installed_genfam_runs_the_main_job_and_a_caption_model_from_another_directory(tmp_path):
  site = _install(tmp_path)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  # the installed copy is the one imported, not the repository's (an editable install would be)
  where = _run(["-c", "import genfam.main, genfam.loop.frozen as f; print(f.__file__)"], site, elsewhere)
  assert where.strip().startswith(site), where

  def train(config, workdir, *overrides):
    _run(["-m", "genfam.main", f"--config={os.path.join(REPO, 'configs', config)}", f"--workdir={workdir}",
          "--config.train.progress=False", *overrides], site, elsewhere)
    with open(elsewhere / workdir / "results.json") as f:
      return json.load(f)

  glow = train("glow.py:smoke", "glow")                       # the main job's smoke variant
  assert glow["family"] == "flow" and glow["test"]["exact"]["bpd"] > 0
  train("clip.py:smoke", "clip")                              # the frozen text encoder, by a smoke run
  caption = train("ddpm.py:caption_smoke", "ddpm_caption", "--config.model.text_encoder_workdir=clip",
                  "--config.diffusion.sampled_t=0")
  report = caption["test"]["vlb"]
  assert report["conditional_on"] == "caption" and report["bpd"] > 0
  assert os.path.getsize(elsewhere / "ddpm_caption" / "samples.png") > 0
