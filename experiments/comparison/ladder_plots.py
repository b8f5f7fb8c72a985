"""The budget ladder's figures, from its judged files (`experiments.comparison.ladder` calls `draw_all`).

- bpd_vs_minutes.png: test bits/dim against training minutes (log x), every row on one axis
  per condition (-log p(x), -log p(x | label), -log p(x | caption)); filled markers for exact
  numbers, hollow for bounds and estimates; error bars are standard errors over test images.
- fid_vs_minutes.png: FID (log y) against training minutes, every row, the real-vs-real floor dashed.
- agreement_vs_minutes.png: class agreement of conditional rows' samples against training minutes,
  the real test images' agreement (the ceiling) dotted, chance (1 / classes) grey.
"""
import os

MARKERS = "osD^v<>ph*Xd"


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def series(found: dict, key) -> dict:
  """{minutes: [record]} -> {row name: [(minutes, record['row'])...]} in rung order."""
  out = {}
  for minutes in sorted(found):
    for record in found[minutes]:
      out.setdefault(record["row"]["name"], []).append((minutes, record["row"]))
  return out


def _style(names):
  return {n: MARKERS[i % len(MARKERS)] for i, n in enumerate(names)}


def bpd_vs_minutes(found: dict, path: str) -> str:
  plt = _plt()
  rows = series(found, "bpd")
  conditions = []
  for points in rows.values():
    c = points[-1][1]["condition"]
    if c not in conditions:
      conditions.append(c)
  fig, axes = plt.subplots(1, len(conditions), figsize=(5.2 * len(conditions), 4.2), squeeze=False)
  markers = _style(rows)
  for ax, condition in zip(axes[0], conditions):
    for name, points in rows.items():
      if points[-1][1]["condition"] != condition:
        continue
      x = [m for m, _ in points]
      y = [r["bpd"] for _, r in points]
      err = [r["bpd_stderr"] for _, r in points]
      exact = points[-1][1]["likelihood_type"] == "exact"
      ax.errorbar(x, y, yerr=err, marker=markers[name], capsize=2, label=f"{name} ({points[-1][1]['likelihood_kind']})",
                  mfc=None if exact else "none")
    ax.set_xscale("log")
    ax.set_xlabel("training minutes (one core, CPU time)")
    ax.set_ylabel("test bits/dim (lower is better)")
    ax.set_title("-log p(x)" if condition == "none" else f"-log p(x | {condition})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle("Test bits/dim against training budget (filled: exact; hollow: bound or estimate)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def fid_vs_minutes(found: dict, path: str) -> str:
  plt = _plt()
  rows = series(found, "fid")
  markers = _style(rows)
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  floors = []
  for name, points in rows.items():
    ax.plot([m for m, _ in points], [r["fid"] for _, r in points], marker=markers[name], label=name)
    floors += [r["fid_floor"] for _, r in points]
  if floors:
    ax.axhline(min(floors), color="k", ls="--", lw=1, label="floor (train vs test)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("training minutes (one core, CPU time)")
  ax.set_ylabel("FID on classifier features (lower is better)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def agreement_vs_minutes(found: dict, path: str) -> str | None:
  plt = _plt()
  rows = {n: p for n, p in series(found, "class_agreement").items() if p[-1][1]["class_agreement"] is not None}
  if not rows:
    return None
  markers = _style(rows)
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  ceilings = []
  for name, points in rows.items():
    ax.plot([m for m, _ in points], [r["class_agreement"] for _, r in points], marker=markers[name],
            label=f"{name} ({points[-1][1]['samples_conditioned_on']})")
    ceilings += [r["class_agreement_real"] for _, r in points]
  ax.axhline(max(ceilings), color="k", ls=":", lw=1, label="real test images")
  ax.axhline(0.1, color="grey", lw=1, label="chance (10 classes)")
  ax.set_xscale("log")
  ax.set_ylim(0, 1)
  ax.set_xlabel("training minutes (one core, CPU time)")
  ax.set_ylabel("class agreement of samples with their condition")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def draw_all(found: dict, out: str) -> dict:
  os.makedirs(out, exist_ok=True)
  paths = {"bpd_vs_minutes": bpd_vs_minutes(found, os.path.join(out, "bpd_vs_minutes.png")),
           "fid_vs_minutes": fid_vs_minutes(found, os.path.join(out, "fid_vs_minutes.png"))}
  agreement = agreement_vs_minutes(found, os.path.join(out, "agreement_vs_minutes.png"))
  if agreement:
    paths["agreement_vs_minutes"] = agreement
  return paths
