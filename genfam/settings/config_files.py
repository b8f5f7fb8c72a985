"""Loading `configs/<name>.py[:variant]` files outside the CLI (tests, experiments), and comparing configs.

`flatten` is the one flat form of a config ({'a.b': value}) and `drift` the one comparison
of two configs; the checkpoint's compatibility check (`genfam.loop.checkpointing`) and
the resume check (`genfam.loop.workdir`) both read `drift`, and the CLI checks override
keys against `flatten`.
"""
import importlib.util
import json
import os

# genfam/settings/config_files.py -> the repository root, which holds configs/ in a checkout. Only names
# ('glow') resolve against it, for tests and experiments run from a checkout: the library itself
# reads no file of the repository (a config file given by path loads its siblings beside it, and a
# frozen model is restored from its workdir's config.json), so an installed genfam runs anywhere.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve(name_or_path: str, beside: str = "") -> str:
  """'glow' -> <repo>/configs/glow.py, or with `beside` (a file) the glow.py in that file's
  directory; a path is returned as it is."""
  if name_or_path.endswith(".py"):
    return name_or_path
  directory = os.path.dirname(os.path.abspath(beside)) if beside else os.path.join(REPO, "configs")
  return os.path.join(directory, f"{name_or_path}.py")


def load(name_or_path: str, variant: str = "", beside: str = ""):
  """get_config(variant) of a config file, as `--config=FILE[:variant]` would load it
  (unlocked, so callers may change it). A config file loading another passes its own
  `__file__` as `beside`, so that the name resolves next to it wherever it is."""
  path = resolve(name_or_path, beside)
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


MISSING = object()   # drift's value of a key that one config lacks


def flatten(config, prefix: str = "") -> dict:
  """{'a.b': value} of every leaf of a config: a ConfigDict or its plain (JSON) dict."""
  out = {}
  for key, value in config.items():
    if hasattr(value, "items"):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def drift(saved, current, value=None) -> dict:
  """{key: (old, new)} of the leaves whose values differ between configs `saved` and `current`
  (ConfigDicts or their dicts), in key order; a key one side lacks is MISSING there.
  value(key, v): what is compared and returned for a present value (default: v itself)."""
  old, new = flatten(saved), flatten(current)
  out = {}
  for k in sorted(set(old) | set(new)):
    a = (value(k, old[k]) if value else old[k]) if k in old else MISSING
    b = (value(k, new[k]) if value else new[k]) if k in new else MISSING
    if a is MISSING or b is MISSING or a != b:
      out[k] = (a, b)
  return out


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
