"""Checkpoints of a run: train state, data-iterator position and metadata.

An orbax `CheckpointManager` in WORKDIR/checkpoints keeps the last few steps.
Each step holds three items: 'state' (the family's train state pytree),
'data' (the grain iterator state, JSON) and 'meta' (step, counters and the
config that made it, JSON). Orbax writes to a temporary directory and renames
it when complete, so a half-written step is never listed. Restoring takes the
latest step that reads back whole and falls back to earlier ones when a step
is corrupt; a checkpoint made by an incompatible config is refused with a
GenfamError naming the keys that differ.
"""
import json
import logging
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from genfam.errors import GenfamError

# Config keys that fix the shapes of the train state: a checkpoint made with
# other values cannot be restored into this run.
STRUCTURAL_KEYS = ("family", "model", "data.name", "optim.ema_decay", "optim.clip_norm")


def _flatten(config: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def structural_differences(saved: dict, current: dict) -> list[str]:
  """Keys under STRUCTURAL_KEYS whose values differ (missing counts as differing)."""
  saved_flat, current_flat = _flatten(saved), _flatten(current)
  keys = sorted(set(saved_flat) | set(current_flat))
  structural = [k for k in keys if any(k == s or k.startswith(s + ".") for s in STRUCTURAL_KEYS)]
  # ema_decay and clip_norm only change the state's structure by being zero or not.
  def value(flat, k):
    v = flat.get(k, "<missing>")
    return bool(v) if k in ("optim.ema_decay", "optim.clip_norm") else v
  return [f"{k}: {value(saved_flat, k)!r} -> {value(current_flat, k)!r}"
          for k in structural if value(saved_flat, k) != value(current_flat, k)]


def config_to_dict(config) -> dict:
  return json.loads(config.to_json()) if isinstance(config, ml_collections.ConfigDict) else dict(config)


def all_finite(tree) -> bool:
  leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "dtype") and np.issubdtype(x.dtype, np.inexact)]
  return all(bool(jax.numpy.isfinite(x).all()) for x in leaves)


class Checkpointer:
  """Saves and restores (state, data-iterator state, meta) in `workdir`/checkpoints."""

  def __init__(self, workdir: str, config, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.config = config_to_dict(config)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
        item_names=("state", "data", "meta"))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, data_state: dict, meta: dict) -> None:
    """Writes step `step`; refuses a non-finite state (never written)."""
    if not all_finite(state):
      raise RuntimeError(f"refusing to checkpoint a non-finite train state at step {step}")
    if step in self.manager.all_steps():
      return
    meta = dict(meta, step=step, config=self.config)
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state), meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def check_compatible(self, step: int) -> None:
    diffs = structural_differences(self.read_meta(step).get("config", {}), self.config)
    if diffs:
      raise GenfamError(
          f"the checkpoint in {self.directory} was made by an incompatible config ({'; '.join(diffs)}): "
          f"use a new --workdir, or the config it was trained with")

  def restore_latest(self, abstract_state):
    """-> (state, data_state, meta) of the newest readable step, or None if none.

    abstract_state: ShapeDtypeStructs (with shardings) of the train state.
    Corrupt steps are skipped with a warning; an incompatible config raises.
    """
    steps = self.steps()
    if not steps:
      return None
    failures = []
    for step in reversed(steps):
      try:
        self.check_compatible(step)
      except GenfamError:
        raise
      except Exception as e:  # unreadable meta: corrupt step
        failures.append(f"step {step}: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
        logging.warning("checkpoint step %d is unreadable (%s); trying an earlier one", step, failures[-1])
        continue
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
      except (ValueError, KeyError, TypeError) as e:
        text = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        if "shape" in text.lower() or "structure" in text.lower() or "tree" in text.lower():
          raise GenfamError(f"the checkpoint at step {step} in {self.directory} does not fit this config's "
                            f"train state ({text}): use a new --workdir, or the config it was trained with") from None
        failures.append(f"step {step}: {text}")
        logging.warning("checkpoint step %d could not be restored (%s); trying an earlier one", step, text)
        continue
      except Exception as e:  # noqa: BLE001 - any read failure means a corrupt step
        failures.append(f"step {step}: {type(e).__name__}")
        logging.warning("checkpoint step %d could not be restored (%s); trying an earlier one", step, e)
        continue
      return restored["state"], restored["data"], restored["meta"]
    raise GenfamError(f"no checkpoint in {self.directory} could be read ({'; '.join(failures)}): "
                      f"remove the directory to start afresh")

  def close(self):
    self.manager.close()
