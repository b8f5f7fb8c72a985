"""genfam's command line: parse flags and config, dispatch train / eval / sample.

  python -m genfam.main --config=configs/glow.py [--config.a.b=value ...] [--workdir=DIR]
                        [--mode=train|eval|sample]

Intentionally short: the work is in `genfam.train`.
"""
import difflib
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from genfam import config_files
from genfam.errors import GenfamError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/<name>.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>[_<variant>]).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do with the workdir.")
_OUT = flags.DEFINE_string("out", "", "--mode=sample: where to write the PNG (default: in the workdir).")


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", name + (f"_{variant}" if variant else ""))


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file it writes at INFO
  from genfam import train
  config = _CONFIG.value
  workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "commands.txt"), "a") as f:  # every invocation, for the results table
    f.write(" ".join(["python -m genfam.main", *sys.argv[1:]]) + "\n")
  if _MODE.value == "train":
    train.train_and_evaluate(config, workdir)
  elif _MODE.value == "eval":
    train.evaluate_workdir(config, workdir)
  else:
    train.sample_workdir(config, workdir, _OUT.value)


def _config_key_error(argv) -> str | None:
  """If a --config.KEY override names no key of the config, a one-line error saying so."""
  config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if config_arg is None:
    return None
  try:
    path, _, variant = config_arg.partition(":")
    config = config_files.load(path, variant)
  except Exception:  # noqa: BLE001 - absl reports a bad config file itself
    return None
  known = set(_flat_keys(config))
  for arg in argv:
    if arg.startswith("--config.") and "=" in arg:
      key = arg[len("--config."):].split("=", 1)[0]
      if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean --config.{close[0]}?" if close else "see the config file for its keys"
        return f"unknown config key {key!r}: {hint}"
  return None


def _flat_keys(config, prefix=""):
  for key, value in config.items():
    name = prefix + key
    if hasattr(value, "items"):
      yield from _flat_keys(value, name + ".")
    else:
      yield name


def run():
  problem = _config_key_error(sys.argv[1:])
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    sys.exit(2)
  try:
    app.run(main)
  except GenfamError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  run()
