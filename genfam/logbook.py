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
  writes the same scalars as TensorBoard events (tensorboardX) in WORKDIR/tb."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    os.makedirs(workdir, exist_ok=True)
    truncate_after(self.path, resume_step)
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step + 1 if resume_step else None)

  def write(self, step: int, split: str, metrics: dict) -> dict:
    row = {"step": int(step), "split": split}
    for k, v in metrics.items():
      if isinstance(v, str):
        row[k] = v
        continue
      row[k] = _scalar(v)
      if isinstance(row[k], float):
        self.tb.add_scalar(f"{split}/{k}", row[k], step)
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    return row

  def close(self):
    self.tb.close()


def truncate_after(path: str, step: int) -> None:
  """Drops rows written after `step` (by a run killed after its last checkpoint),
  so a resumed run's metrics.jsonl reads as if it had never stopped."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    rows = [line for line in f if line.strip()]
  kept = [line for line in rows if json.loads(line).get("step", 0) <= step]
  if len(kept) != len(rows):
    with open(path, "w") as f:
      f.writelines(kept)


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
