"""Loading `configs/<name>.py[:variant]` files outside the CLI (tests, experiments)."""
import importlib.util
import json
import os

# genfam/settings/config_files.py -> the repository root, which holds configs/.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve(name_or_path: str) -> str:
  """'glow' -> <repo>/configs/glow.py; a path is returned as it is."""
  if name_or_path.endswith(".py"):
    return name_or_path
  return os.path.join(REPO, "configs", f"{name_or_path}.py")


def load(name_or_path: str, variant: str = ""):
  """get_config(variant) of a config file, as `--config=FILE[:variant]` would load it
  (unlocked, so callers may change it)."""
  path = resolve(name_or_path)
  spec = importlib.util.spec_from_file_location(f"genfam_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def saved(workdir: str, fallback: str = ""):
  """The config a run in `workdir` started with (its config.json) as a ConfigDict; if it has
  none, `fallback` ('FILE[:variant]') loaded with `load`, or None without a fallback."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    import ml_collections
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  if not fallback:
    return None
  name, _, variant = fallback.partition(":")
  return load(name, variant)


def apply_overrides(config, overrides: dict):
  """config with `overrides` ({'a.b': value}) set in place, as --config.a.b=value would
  (an int given for a float key becomes a float); -> config."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = float(value) if isinstance(node.get(leaf), float) and not isinstance(value, bool) else value
  return config
