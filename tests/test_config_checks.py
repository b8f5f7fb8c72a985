"""Every shared config key's obvious bad values are one line naming the key, in every config."""
import glob
import os
import subprocess
import sys

import pytest

from genfam.errors import GenfamError
from genfam.loop import train
from genfam.settings import config_checks
from tests.conftest import REPO, load_config

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py")))


def _set(config, key, value):
  node = config
  *parents, leaf = key.split(".")
  for part in parents:
    node = node[part]
  with config.ignore_type():
    node[leaf] = value


@pytest.mark.parametrize("name", CONFIGS)
def test_bad_values_of_shared_keys_name_the_key(name):
  config = load_config(name)
  config_checks.check(config)  # the smoke config itself is valid
  for key in config_checks._RULES:
    for bad in (-1, -0.5, float("nan"), "x"):
      c = load_config(name)
      _set(c, key, bad)
      with pytest.raises(GenfamError, match=rf"^--config\.{key}=.* is not valid: it must be "):
        config_checks.check(c)
  for key in ("data.batch_size", "eval.batch_size", "eval.num_draws", "sample.num", "train.keep_checkpoints",
              "optim.learning_rate"):
    c = load_config(name)
    _set(c, key, 0)
    with pytest.raises(GenfamError, match=rf"--config\.{key}=0"):
      config_checks.check(c)


def test_a_missing_source_dir_is_refused_before_anything_runs(tmp_path):
  c = load_config("independent")
  c.data.source_dir = str(tmp_path / "nowhere")
  with pytest.raises(GenfamError, match="data.source_dir=.* is not a directory"):
    train.Run(c, str(tmp_path / "run"))


@pytest.mark.parametrize("args, message", [
    (["--config=configs/independent.py:smoke", "--config.data.batch_size=abc"],
     "error: --config.data.batch_size='abc' is not an integer: give an integer"),
    (["--config=configs/independent.py:smoke", "--config.train.progress=maybe"],
     "error: --config.train.progress='maybe' is not true or false"),
    (["--config=configs/independent.py:smoke", "--config.data.batch_size=0"],
     "error: --config.data.batch_size=0 is not valid: it must be a positive integer"),
    (["--config=configs/independent.py:smoke", "--config.train.malloc=tcmalloc"],
     "error: --config.train.malloc='tcmalloc' is not valid: it must be one of 'jemalloc', 'glibc'"),
    (["--config=configs/nothere.py"], "error: config file 'configs/nothere.py' does not exist"),
])
@pytest.mark.slow
def test_cli_bad_values_are_one_line(tmp_path, args, message):
  proc = subprocess.run([sys.executable, "-m", "genfam.main", *args, f"--workdir={tmp_path}"], cwd=REPO,
                        capture_output=True, text=True)
  assert proc.returncode == 2 and proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
