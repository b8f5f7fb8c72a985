"""The results tables of docs/results.md ("Per-family results", the judges), from run workdirs.

  .venv/bin/python -m experiments.comparison.results_table runs/glow runs/vae runs/ddpm

One row per likelihood a run reported (results.json of a finished run, and any
eval_step_*.json of `--mode=eval`), with the training steps, wall-clock
training time, training images/s and peak memory (RSS of the process that
trained and evaluated), and the command that made
it (the workdir's commands.txt records every invocation).

A model that reports test metrics instead of a likelihood (the domain
classifier, CLIP) gets a second table: one row per metric, with its standard
error and chance level, the headline metric first.
"""
import glob
import json
import os
import sys

from genfam.family import METRICS_KIND


def _results(workdir: str):
  """-> (config, [(source, result)], train command, eval command) of a workdir."""
  commands = []
  if os.path.exists(os.path.join(workdir, "commands.txt")):
    with open(os.path.join(workdir, "commands.txt")) as f:
      commands = [line.strip() for line in f if line.strip()]
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  results = []
  if os.path.exists(os.path.join(workdir, "results.json")):
    with open(os.path.join(workdir, "results.json")) as f:
      results.append(("train", json.load(f)))
  for path in sorted(glob.glob(os.path.join(workdir, "eval_step_*.json"))):
    with open(path) as f:
      results.append(("eval", json.load(f)))
  train_cmd = next((c for c in reversed(commands) if "--mode" not in c), "")
  eval_cmd = next((c for c in reversed(commands) if "--mode=eval" in c), "")
  return config, results, train_cmd, eval_cmd


def rows(workdir: str):
  """One row per likelihood report of the workdir's results."""
  config, results, train_cmd, eval_cmd = _results(workdir)
  for source, result in results:
    for kind, r in result["test"].items():
      if kind == METRICS_KIND:
        continue
      yield {"run": os.path.basename(os.path.normpath(workdir)), "family": config["family"],
             "dataset": config["data"]["name"], "kind": kind, "bpd": r["bpd"], "stderr": r["bpd_stderr"],
             "examples": r["num_examples"], "draws": r["num_draws"], "steps": result["step"],
             "train_minutes": result.get("train_seconds", float("nan")) / 60,
             "images_per_s": result.get("train_images_per_s"), "peak_rss_mib": result.get("peak_rss_mib"),
             "command": train_cmd if source == "train" else f"{train_cmd}; {eval_cmd}"}


def metric_rows(workdir: str):
  """One row per test metric of the workdir's metrics reports (headline first)."""
  config, results, train_cmd, eval_cmd = _results(workdir)
  for source, result in results:
    r = result["test"].get(METRICS_KIND)
    if r is None:
      continue
    names = [k for k in r if isinstance(r[k], float) and not k.endswith(("_stderr", "_chance")) and k != "seconds"]
    for name in names:
      yield {"run": os.path.basename(os.path.normpath(workdir)), "family": config["family"],
             "dataset": config["data"]["name"], "metric": name, "value": r[name],
             "stderr": r.get(f"{name}_stderr", float("nan")), "chance": r.get(f"{name}_chance"),
             "examples": r["num_examples"], "gallery": r["gallery_size"], "steps": result["step"],
             "train_minutes": result.get("train_seconds", float("nan")) / 60,
             "images_per_s": result.get("train_images_per_s"), "peak_rss_mib": result.get("peak_rss_mib"),
             "command": train_cmd if source == "train" else f"{train_cmd}; {eval_cmd}"}


def main(workdirs):
  likelihoods = [r for w in workdirs for r in rows(w)]
  metrics = [r for w in workdirs for r in metric_rows(w)]
  if likelihoods or not metrics:
    likelihood_table(likelihoods)
  if metrics:
    if likelihoods:
      print()
    metrics_table(metrics)


def metrics_table(rows_):
  print("| run | test metric | value | chance | test examples | steps | train time | train images/s | peak RSS "
        "| command |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows_:
    speed = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "–"
    rss = f"{r['peak_rss_mib'] / 1024:.1f} GiB" if r["peak_rss_mib"] else "–"
    chance = f"{r['chance']:.3f}" if r["chance"] is not None else "–"
    print(f"| {r['run']} ({r['family']}, {r['dataset']}) | {r['metric']} | {r['value']:.4f} ± {r['stderr']:.4f} | "
          f"{chance} | {r['examples']} (galleries of {r['gallery']}) | {r['steps']} | {r['train_minutes']:.0f} min | "
          f"{speed} | {rss} | `{r['command']}` |")


def likelihood_table(rows_):
  print("| run | likelihood | test bits/dim | test images | steps | train time | train images/s | peak RSS | command |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows_:
    speed = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "–"
    rss = f"{r['peak_rss_mib'] / 1024:.1f} GiB" if r["peak_rss_mib"] else "–"
    print(f"| {r['run']} ({r['family']}, {r['dataset']}) | {r['kind']} | {r['bpd']:.3f} ± {r['stderr']:.3f} | "
          f"{r['examples']} × {r['draws']} draws | {r['steps']} | {r['train_minutes']:.0f} min | {speed} | {rss} | "
          f"`{r['command']}` |")


if __name__ == "__main__":
  main(sys.argv[1:])
