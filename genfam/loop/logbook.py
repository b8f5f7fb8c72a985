"""Where a run's numbers go: metrics.jsonl, TensorBoard events, a progress bar."""
import json
import math
import os
import sys

import numpy as np


def _scalar(v):
  v = float(np.asarray(v))
  return v if math.isfinite(v) else str(v)


class Logbook:
  """Appends {'step', 'split', name: value} rows to WORKDIR/metrics.jsonl and
  writes the same numbers as TensorBoard events (tensorboardX) in WORKDIR/tb:
  scalars as scalars, 1-D arrays (e.g. a KL per latent dimension) as lists
  and histograms."""

  def __init__(self, workdir: str, resume_step: int = 0, primary: bool = True):
    """Opens WORKDIR's logs for a run at `resume_step` (0: a fresh start), dropping
    what an earlier session wrote after that step, in both logs. With `primary`
    False (every process of a multi-process run but process 0) nothing is written:
    `write` only returns the row."""
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.primary, self.tb = primary, None
    if not primary:
      return
    os.makedirs(workdir, exist_ok=True)
    truncate_after(self.path, resume_step)
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step + 1)

  def write(self, step: int, split: str, metrics: dict) -> dict:
    """Logs `metrics` (strings, scalars or 1-D arrays) at `step`; -> the row written,
    numbers as floats (or lists of floats), non-finite ones as strings ('nan')."""
    row = {"step": int(step), "split": split}
    for k, v in metrics.items():
      if isinstance(v, str):
        row[k] = v
        continue
      v = np.asarray(v)
      if v.ndim > 1:
        raise ValueError(f"metric {k!r} has shape {v.shape}: log scalars or 1-D arrays")
      if v.ndim == 1:
        row[k] = [_scalar(x) for x in v]
        if self.primary and v.size and np.isfinite(v).all():
          self.tb.add_histogram(f"{split}/{k}", v.astype(np.float64), step)
        continue
      row[k] = _scalar(v)
      if self.primary and isinstance(row[k], float):
        self.tb.add_scalar(f"{split}/{k}", row[k], step)
    if self.primary:
      with open(self.path, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row

  def close(self):
    if self.tb is not None:
      self.tb.close()


def truncate_after(path: str, step: int) -> None:
  """Drops rows written after `step` (by a run killed after its last checkpoint)
  and a row cut short by the kill, so a resumed run's metrics.jsonl reads as if
  it had never stopped."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    rows = [line for line in f if line.strip()]
  kept = [line for line in rows if line.endswith("\n") and _step_of(line) <= step]
  if len(kept) != len(rows):  # a new file renamed over the old: a kill now loses no row
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)


def _step_of(line: str) -> float:
  """The step of a metrics.jsonl line; inf for a line that does not parse."""
  try:
    return json.loads(line).get("step", 0)
  except json.JSONDecodeError:
    return math.inf


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def progress_bar(total: int, initial: int, enabled: bool):
  from tqdm import tqdm
  return tqdm(total=total, initial=initial, disable=not enabled, file=sys.stderr, unit="step",
              dynamic_ncols=True, mininterval=1.0)
