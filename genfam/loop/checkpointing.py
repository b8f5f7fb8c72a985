"""Checkpoints of a run: train state, data-iterator position and metadata.

An orbax `CheckpointManager` in WORKDIR/checkpoints keeps the last few steps.
Each step holds three items: 'state' (the family's train state pytree),
'data' (the grain iterator state, JSON) and 'meta' (step, counters and the
config that made it, JSON). Orbax writes to a temporary directory and renames
it when complete, so a half-written step is never listed. Restoring takes the
latest step that reads back whole and falls back to earlier ones when a step
is corrupt, moving the corrupt step aside (WORKDIR/corrupt_checkpoints) so
that the run saves it again. A
checkpoint made by an incompatible config (its meta's structural keys, or the
shapes and dtypes of its saved state) is refused with a GenfamError naming
what differs.
"""
import json
import logging
import os
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from genfam.errors import GenfamError
from genfam.settings import config_files

# Config keys that fix the shapes of the train state: a checkpoint made with
# other values cannot be restored into this run.
STRUCTURAL_KEYS = ("family", "model", "data.name", "optim.ema_decay", "optim.clip_norm")
# ... except these, which change how the state is computed with, not its shapes: a run may
# switch model.dtype between float32 and bfloat16, or the image-GPT's attention between query
# blocks (and checkpoints from before a key existed resume).
COMPUTE_ONLY_KEYS = ("model.dtype", "model.query_block")


def _structural(key: str) -> bool:
  return any(key == s or key.startswith(s + ".") for s in STRUCTURAL_KEYS) and key not in COMPUTE_ONLY_KEYS


def _structural_value(key: str, v):
  # ema_decay and clip_norm only change the state's structure by being zero or not; a
  # workdir key (a frozen encoder's run) names a directory, however it is spelled.
  if key.endswith("_workdir") and isinstance(v, str) and v:
    return os.path.realpath(v)
  return bool(v) if key in ("optim.ema_decay", "optim.clip_norm") else v


def structural_differences(saved: dict, current: dict) -> list[str]:
  """Keys under STRUCTURAL_KEYS whose values differ (missing counts as differing): the
  config drift (`config_files.drift`) that changes the train state's shapes."""
  show = lambda v: "<missing>" if v is config_files.MISSING else v  # noqa: E731
  return [f"{k}: {show(old)!r} -> {show(new)!r}"
          for k, (old, new) in config_files.drift(saved, current, _structural_value).items() if _structural(k)]


def config_to_dict(config) -> dict:
  return json.loads(config.to_json()) if isinstance(config, ml_collections.ConfigDict) else dict(config)


def all_finite(tree) -> bool:
  leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "dtype") and np.issubdtype(x.dtype, np.inexact)]
  return all(bool(jax.numpy.isfinite(x).all()) for x in leaves)


def _leaf_specs(tree) -> dict:
  """{'params.dense.kernel': ((3, 4), 'float32'), ..} for a tree of arrays, shape
  structs or orbax array metadata; empty nodes (None, ()) are left out."""
  flat = ocp.tree.to_flat_dict(tree, sep=".")
  return {k: (tuple(v.shape), np.dtype(v.dtype).name) for k, v in flat.items() if hasattr(v, "shape")}


class Checkpointer:
  """Saves and restores (state, data-iterator state, meta) in `workdir`/checkpoints."""

  def __init__(self, workdir: str, config, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.aside_directory = os.path.join(os.path.abspath(workdir), "corrupt_checkpoints")
    self.config = config_to_dict(config)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
        item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def steps(self) -> list[int]:
    """The saved steps, oldest first (half-written temporary directories are not listed)."""
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, data_state: dict, meta: dict) -> None:
    """Writes step `step` (kept as it is if already saved); refuses a non-finite state."""
    if not all_finite(state):
      raise RuntimeError(f"refusing to checkpoint a non-finite train state at step {step}")
    if step in self.manager.all_steps():
      return
    meta = dict(meta, step=step, config=self.config)
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state), meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    """Step `step`'s meta: step, counters and the config that made it."""
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def check_compatible(self, step: int) -> None:
    """Raises GenfamError if step `step` was made by a config of other STRUCTURAL_KEYS."""
    diffs = structural_differences(self.read_meta(step).get("config", {}), self.config)
    if diffs:
      raise GenfamError(
          f"the checkpoint in {self.directory} was made by an incompatible config ({'; '.join(diffs)}): "
          f"use a new --workdir, or the config it was trained with")

  def state_differences(self, step: int, abstract_state) -> list[str]:
    """Leaves whose shape or dtype differ between step `step`'s saved state and
    `abstract_state` (a leaf on one side only counts as differing)."""
    saved = self.manager.item_metadata(step)["state"]
    if saved is None:
      raise ValueError("the saved state has no readable metadata")
    saved, current = _leaf_specs(getattr(saved, "tree", saved)), _leaf_specs(abstract_state)
    return [f"{k}: {saved.get(k, '<missing>')} -> {current.get(k, '<missing>')}"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]

  def restore(self, step: int, abstract_state):
    """-> (state, data_state, meta) of step `step`, read into `abstract_state`'s shardings."""
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
        meta=ocp.args.JsonRestore()))
    return restored["state"], restored["data"], restored["meta"]

  def restore_latest(self, abstract_state):
    """-> (state, data_state, meta) of the newest readable step, or None if none.

    abstract_state: ShapeDtypeStructs (with shardings) of the train state.
    A corrupt step is moved aside with a warning and an earlier one tried; a step
    made by an incompatible config, or holding a state of other shapes, raises.
    """
    steps = self.steps()
    if not steps:
      return None
    failures = []
    for step in reversed(steps):
      try:
        self.check_compatible(step)
        diffs = self.state_differences(step, abstract_state)
      except GenfamError:
        raise
      except Exception as e:  # noqa: BLE001 - unreadable meta or metadata: a corrupt step
        self._discard(step, e, failures)
        continue
      if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise GenfamError(f"the checkpoint at step {step} in {self.directory} does not fit this config's "
                          f"train state ({shown}): use a new --workdir, or the config it was trained with")
      try:
        return self.restore(step, abstract_state)
      except Exception as e:  # noqa: BLE001 - its shapes fit, so any read failure means a corrupt step
        self._discard(step, e, failures)
    raise GenfamError(f"no checkpoint in {self.directory} could be read ({'; '.join(failures)}); they "
                      f"were moved to {self.aside_directory}: train again to start afresh")

  def _discard(self, step: int, error: Exception, failures: list) -> None:
    """Moves unreadable step `step` out of the way, to WORKDIR/corrupt_checkpoints/<step>
    (nothing is deleted; the run then writes the step again), noting why in `failures`."""
    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    failures.append(f"step {step}: {reason}")
    aside = os.path.join(self.aside_directory, f"{step}.{time.strftime('%Y%m%d-%H%M%S')}")
    logging.warning("checkpoint step %d is unreadable (%s); moved to %s, trying an earlier one", step, reason, aside)
    if jax.process_index() == 0:  # one process moves it; all wait for the move before listing again
      os.makedirs(self.aside_directory, exist_ok=True)
      os.replace(os.path.join(self.directory, str(step)), aside)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"genfam-discard-{step}")
    self.manager.reload()

  def close(self):
    self.manager.close()
