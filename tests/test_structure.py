"""genfam's layers (docs/DESIGN.md, "Code layout"): every module imports, each imports only
its own package or the layers below it, and no import cycle exists, lazy imports (inside
functions) and the registry's module names included. Fast: it parses source, and imports
each module once."""
import ast
import importlib
import os
import re

import pytest

from genfam.settings import config_files

REPO = config_files.REPO
PACKAGE = os.path.join(REPO, "genfam")

# Top to bottom, as docs/DESIGN.md's code layout lists them. A unit is a package under genfam/ or
# a top-level module; a module may import its own unit and any unit of a lower layer, nothing else.
LAYERS = (
    ("main",),                                  # the CLI
    ("loop",),                                  # the one loop; frozen models of other runs
    ("evaluation",),                            # reports, FID / KID, sample grids
    ("sharding",),                              # the data mesh
    ("registry",),                              # families by name
    ("families",),                              # one module per family
    ("optim", "bijectors", "diffusion"),        # what families build with
    ("nets",),                                  # networks
    ("likelihood", "data", "settings"),         # likelihood arithmetic, the data pipeline, config sections
    ("cpu",),                                   # XLA:CPU platform tuning
    ("family", "errors"),                       # the family contract, GenfamError
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _modules() -> dict:
  """{'genfam.loop.train': path} of every module of the package."""
  out = {}
  for root, dirs, files in os.walk(PACKAGE):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        out[module[:-len(".__init__")] if module.endswith(".__init__") else module] = path
  return out


MODULES = _modules()


def _imports(module: str, path: str) -> set:
  """The genfam modules `module` imports anywhere in its source (function bodies included), and
  the modules it names as strings (the registry's importlib names)."""
  tree = ast.parse(open(path).read(), path)
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from . import x
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
      found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
      found.add(node.value)
  return {m for m in found if m.split(".")[0] == "genfam" and m != module and m != "genfam"}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _unit(module: str) -> str:
  return module.split(".")[1]


def test_every_unit_has_a_layer():
  units = {_unit(m) for m in MODULES if m != "genfam"}
  assert units == set(RANK), f"units without a layer: {sorted(units - set(RANK))}; layers without a unit: " \
                             f"{sorted(set(RANK) - units)} (add them to LAYERS and docs/DESIGN.md's code layout)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
  importlib.import_module(module)


def test_layers_import_downward_only():
  upward = [f"{m} imports {i} ({_unit(m)} is layer {RANK.get(_unit(m))}, {_unit(i)} layer {RANK.get(_unit(i))})"
            for m, imported in sorted(GRAPH.items()) if m != "genfam" for i in sorted(imported)
            if _unit(i) != _unit(m) and RANK.get(_unit(i), -1) <= RANK.get(_unit(m), -1)]
  assert not upward, "imports that do not go down a layer:\n" + "\n".join(upward)


def test_no_import_cycles():
  """Depth-first search of the module graph; a back edge is a cycle."""
  state, cycles = {}, []

  def visit(module, stack):
    state[module] = "open"
    for imported in sorted(GRAPH.get(module, ())):
      if state.get(imported) == "open":
        cycles.append(" -> ".join(stack[stack.index(imported):] + [imported]))
      elif imported not in state:
        visit(imported, stack + [imported])
    state[module] = "done"

  for module in sorted(GRAPH):
    if module not in state:
      visit(module, [module])
  assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_design_lists_the_layers_top_to_bottom():
  """The units docs/DESIGN.md's code layout names, in the order it names them, go down the layers."""
  with open(os.path.join(REPO, "docs", "DESIGN.md")) as f:
    text = f.read()
  section = text.split("## Code layout", 1)[1].split("\n## ", 1)[0]
  block = "\n".join(line for line in section.splitlines() if line.startswith("    "))   # the layout itself
  named = [m.group(1) for m in re.finditer(r"\bgenfam/([a-z_]+)(?:/|\.py)", block)]
  assert set(named) >= set(RANK), f"DESIGN.md's code layout does not name {sorted(set(RANK) - set(named))}"
  ranks = [RANK[u] for u in named if u in RANK]
  assert ranks == sorted(ranks), f"DESIGN.md's code layout lists the units out of layer order: {named}"


def test_a_caption_family_built_without_the_loop_says_how_to_build_it():
  """A family reads no checkpoint: its frozen text encoder comes from the loop (loop.frozen)."""
  from genfam.data import sources
  from genfam.errors import GenfamError
  from genfam.families import diffusion
  from tests.conftest import load_config
  with pytest.raises(GenfamError, match=r"genfam\.loop\.frozen\.make_family") as e:
    diffusion.make(load_config("ddpm", "caption_smoke"), sources.dataset_spec("digits"))
  assert "\n" not in str(e.value)
