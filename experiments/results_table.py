"""The README's results table, from run workdirs.

  python -m experiments.results_table runs/glow runs/vae runs/ddpm

One row per likelihood a run reported (results.json of a finished run, and any
eval_step_*.json of `--mode=eval`), with the training steps, wall-clock
training time, training images/s and peak memory (RSS of the process that
trained and evaluated), and the command that made
it (the workdir's commands.txt records every invocation).
"""
import glob
import json
import os
import sys


def rows(workdir: str):
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
  for source, result in results:
    train_cmd = next((c for c in reversed(commands) if "--mode" not in c), "")
    eval_cmd = next((c for c in reversed(commands) if "--mode=eval" in c), "")
    for kind, r in result["test"].items():
      yield {"run": os.path.basename(os.path.normpath(workdir)), "family": config["family"],
             "dataset": config["data"]["name"], "kind": kind, "bpd": r["bpd"], "stderr": r["bpd_stderr"],
             "examples": r["num_examples"], "draws": r["num_draws"], "steps": result["step"],
             "train_minutes": result.get("train_seconds", float("nan")) / 60,
             "images_per_s": result.get("train_images_per_s"), "peak_rss_mib": result.get("peak_rss_mib"),
             "command": train_cmd if source == "train" else f"{train_cmd}; {eval_cmd}"}


def main(workdirs):
  print("| run | likelihood | test bits/dim | test images | steps | train time | train images/s | peak RSS | command |")
  print("|---|---|---|---|---|---|---|---|---|")
  for workdir in workdirs:
    for r in rows(workdir):
      speed = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "–"
      rss = f"{r['peak_rss_mib'] / 1024:.1f} GiB" if r["peak_rss_mib"] else "–"
      print(f"| {r['run']} ({r['family']}, {r['dataset']}) | {r['kind']} | {r['bpd']:.3f} ± {r['stderr']:.3f} | "
            f"{r['examples']} × {r['draws']} draws | {r['steps']} | {r['train_minutes']:.0f} min | {speed} | {rss} | "
            f"`{r['command']}` |")


if __name__ == "__main__":
  main(sys.argv[1:])
