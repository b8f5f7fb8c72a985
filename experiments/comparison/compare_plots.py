"""The comparison's pictures, from the runs' own files (`experiments.comparison.compare` calls `draw_all`).

- bpd_vs_time.png: test bits/dim against training time, every family on one axis:
  the 'eval' rows of each WORKDIR/metrics.jsonl (train.eval_examples test images,
  at eval.every_seconds of training) and the final 'test/<kind>' row (all the
  evaluation's test images, a filled marker); rows without 'train_seconds'
  (runs from before it was logged) are left out.
- fid_vs_sampling.png: FID against seconds per sample (1 / sampling images/s), log x,
  with each family's real-vs-real floor.
- samples.png: one row per family, the first samples of its sample-quality
  evaluation (WORKDIR/sample_quality_samples.npz): drawn from test images
  0, 1, ..'s labels or captions by conditional models, unconditionally otherwise.
- captions.png: the same test captions rendered by every caption-conditional
  family, under the real test images they describe.
"""
import os
import textwrap

import numpy as np

from genfam.data import captions, sources
from genfam.loop.logbook import read_metrics

COLUMNS = 10


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def time_curve(workdir: str, kind: str) -> tuple[list, list, tuple]:
  """-> (minutes, bits/dim) of the eval rows with a training time, and (minutes, bpd) of the last test row."""
  minutes, bpd, final = [], [], None
  for r in read_metrics(workdir):
    if "train_seconds" not in r or not isinstance(r.get("bpd"), float):
      continue
    if r["split"] == "eval":
      minutes.append(r["train_seconds"] / 60)
      bpd.append(r["bpd"])
    elif r["split"] == f"test/{kind}":
      final = (r["train_seconds"] / 60, r["bpd"])
  return minutes, bpd, final


def bpd_vs_time(rows: list[dict], path: str) -> str:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(8, 5))
  for i, r in enumerate(rows):
    minutes, bpd, final = time_curve(r["workdir"], r["likelihood_kind"])
    color = f"C{i % 10}"
    label = f"{r['name']} ({r['likelihood_kind']}{', | ' + r['condition'] if r['condition'] != 'none' else ''})"
    ax.plot(minutes, bpd, "o-", color=color, markerfacecolor="none", markersize=4, label=label)
    if final is not None:
      ax.plot(*final, "o", color=color, markersize=7)
  ax.set_xlabel("training time (minutes)")
  ax.set_ylabel("test bits/dim (open: train.eval_examples images; filled: final)")
  ax.set_title("Test bits/dim against training time (compare only within one condition and kind)", fontsize=9)
  ax.legend(fontsize=7, loc="upper right")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def fid_vs_sampling(rows: list[dict], path: str) -> str:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 5))
  for i, r in enumerate(rows):
    seconds = 1.0 / r["sample_images_per_s"]
    ax.plot(seconds, r["fid"], "o", color=f"C{i % 10}", label=r["name"])
    ax.annotate(r["name"], (seconds, r["fid"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
  floor = float(np.mean([r["fid_floor"] for r in rows]))
  ax.axhline(floor, color="0.5", linestyle="--", linewidth=1, label=f"real-vs-real floor {floor:.2f}")
  ax.set_xscale("log")
  ax.set_xlabel("sampling time (seconds per image)")
  ax.set_ylabel(f"FID on classifier features ({rows[0]['num_samples']} samples)")
  ax.set_title("FID against sampling time", fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _first_samples(row: dict):
  path = os.path.join(row["workdir"], "sample_quality_samples.npz")
  return dict(np.load(path)) if os.path.exists(path) else None


def _show(ax, image, num_bins):
  image = np.asarray(image, np.float64) / (num_bins - 1)
  ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])


def _spec(row: dict):
  import json
  with open(os.path.join(row["workdir"], "config.json")) as f:
    return sources.dataset_spec(json.load(f)["data"]["name"])


def samples_grid(rows: list[dict], path: str) -> str:
  plt = _plt()
  kept = [(r, s) for r in rows if (s := _first_samples(r)) is not None]
  columns = min(COLUMNS, min(len(s["image"]) for _, s in kept))
  fig, axes = plt.subplots(len(kept), columns, figsize=(1.0 * columns + 1.8, 1.05 * len(kept)), squeeze=False)
  for (r, s), line in zip(kept, axes):
    spec = _spec(r)
    for j, ax in enumerate(line):
      _show(ax, s["image"][j], spec.num_bins)
    condition = str(s["condition"]) or "unconditional"
    line[0].set_ylabel(f"{r['name']}\n({condition})", rotation=0, ha="right", va="center", fontsize=7)
  fig.suptitle("The first samples of each family's evaluation (conditional: test images 0..9's labels / captions)",
               fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def captions_grid(rows: list[dict], path: str, test_images) -> str | None:
  """Real test images (top row) and, below, each caption family's samples from their captions."""
  plt = _plt()
  kept = [(r, s) for r in rows if (s := _first_samples(r)) is not None and str(s["condition"]) == "caption"]
  if not kept:
    return None
  spec = _spec(kept[0][0])
  columns = min(8, len(kept[0][1]["image"]))
  fig, axes = plt.subplots(len(kept) + 1, columns, figsize=(1.45 * columns + 1.6, 1.35 * (len(kept) + 1) + 0.4),
                           squeeze=False)
  for j, ax in enumerate(axes[0]):
    _show(ax, test_images[j], spec.num_bins)
    text = captions.decode(kept[0][1]["caption"][j], spec)
    ax.set_title("\n".join(textwrap.wrap(text, 18)), fontsize=6)
  axes[0][0].set_ylabel("test image", rotation=0, ha="right", va="center", fontsize=7)
  for (r, s), line in zip(kept, axes[1:]):
    for j, ax in enumerate(line):
      _show(ax, s["image"][j], spec.num_bins)
    line[0].set_ylabel(r["name"], rotation=0, ha="right", va="center", fontsize=7)
  fig.suptitle("The same test captions rendered by every caption-conditional family", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def draw_all(rows: list[dict], out: str) -> dict:
  """All four pictures into `out`; -> {name: path} (no caption grid without a caption family)."""
  paths = {"bpd_vs_time": bpd_vs_time(rows, os.path.join(out, "bpd_vs_time.png")),
           "fid_vs_sampling": fid_vs_sampling(rows, os.path.join(out, "fid_vs_sampling.png")),
           "samples": samples_grid(rows, os.path.join(out, "samples.png"))}
  caption_rows = [r for r in rows if r["samples_conditioned_on"] == "caption"]
  if caption_rows:
    test_images = _test_images(caption_rows[0])
    grid = captions_grid(rows, os.path.join(out, "captions.png"), test_images)
    if grid:
      paths["captions"] = grid
  return paths


def _test_images(row: dict, num: int = 8):
  """The first `num` test images of the row's dataset, as the evaluation read them."""
  import json

  import ml_collections

  from genfam.data import pipeline
  with open(os.path.join(row["workdir"], "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  return pipeline.split_images(sources.load(config.data).sources["test"])[:num]


