"""The logbook: rows in metrics.jsonl, TensorBoard events, truncation on resume."""
import glob
import json
import os
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from genfam.loop.logbook import Logbook, read_metrics, truncate_after


def _events(workdir) -> list:
  """Every event in WORKDIR/tb's event files (TFRecord: length, crc, data, crc)."""
  events = []
  for path in sorted(glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*"))):
    with open(path, "rb") as f:
      data = f.read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at:at + 8])
      events.append(event_pb2.Event.FromString(data[at + 12:at + 12 + length]))
      at += 12 + length + 4
  return events


def test_scalars_and_vectors(tmp_path):
  book = Logbook(str(tmp_path))
  row = book.write(3, "train", {"loss": np.float32(1.5), "kl_per_dim": np.array([0.5, 0.0, 2.0]),
                                "bad": np.nan, "kind": "elbo"})
  book.close()
  assert row == {"step": 3, "split": "train", "loss": 1.5, "kl_per_dim": [0.5, 0.0, 2.0], "bad": "nan",
                 "kind": "elbo"}
  assert read_metrics(str(tmp_path)) == [row]
  values = {v.tag: v for e in _events(str(tmp_path)) for v in e.summary.value}
  assert values["train/loss"].simple_value == 1.5
  assert values["train/kl_per_dim"].histo.num == 3 and values["train/kl_per_dim"].histo.max == 2.0
  assert "train/bad" not in values
  with pytest.raises(ValueError, match="'grid' has shape \\(2, 2\\)"):
    Logbook(str(tmp_path / "other")).write(1, "train", {"grid": np.zeros((2, 2))})


def test_truncate_drops_later_and_torn_rows(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write("".join(json.dumps({"step": s, "split": "train"}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "sp')
  truncate_after(path, 2)
  assert [r["step"] for r in read_metrics(str(tmp_path))] == [1, 2]
  assert os.listdir(tmp_path) == ["metrics.jsonl"]  # the temporary file was renamed over it


def test_restart_purges_what_the_killed_session_logged(tmp_path):
  for resume_step, purge_step in ((0, 1), (4, 5)):
    book = Logbook(str(tmp_path), resume_step=resume_step)
    book.write(7, "train", {"loss": 1.0})
    book.close()
    starts = [e.step for e in _events(str(tmp_path)) if e.HasField("session_log")]
    assert starts[-1] == purge_step  # TensorBoard drops earlier files' events from this step on
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [7]
