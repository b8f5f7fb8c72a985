"""Run one config with several sets of overrides and tabulate what each reached.

  python -m experiments.sweep --config=configs/glow.py --root=runs/sweep_glow \
      --common=train.num_steps=1500,eval.num_examples=2000 \
      --variant=k4w64:model.num_steps=4,model.width=64 \
      --variant=k8w64:model.num_steps=8,model.width=64

Each variant is an ordinary run of `python -m genfam.main` in ROOT/NAME (so an
interrupted sweep resumes where it stopped, and finished variants are only
re-evaluated); the table lists the test bits/dim, the steps, the training
wall-clock time, images/s and the bits/dim gained over the uniform model per
CPU-hour, with the command that reproduces each row. Locally the variants run one
after another; across machines, hand the same commands to an existing scheduler.
"""
import argparse
import json
import math
import os
import subprocess
import sys


def command(config: str, workdir: str, overrides: list[str]) -> list[str]:
  return [sys.executable, "-m", "genfam.main", f"--config={config}", f"--workdir={workdir}",
          *[f"--config.{o}" for o in overrides]]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--root", required=True)
  parser.add_argument("--common", default="", help="comma-separated key=value overrides for every variant")
  parser.add_argument("--variant", action="append", required=True, help="NAME:key=value,key=value")
  parser.add_argument("--cores", type=float, default=float(os.cpu_count() or 1),
                      help="CPU cores a run uses (for CPU-hours)")
  args = parser.parse_args()
  common = [o for o in args.common.split(",") if o]
  rows = []
  for variant in args.variant:
    name, _, spec = variant.partition(":")
    overrides = common + [o for o in spec.split(",") if o]
    workdir = os.path.join(args.root, name)
    cmd = command(args.config, workdir, overrides)
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    with open(os.path.join(workdir, "results.json")) as f:
      result = json.load(f)
    kind, report = next(iter(result["test"].items()))
    num_bins = report["num_bins"]
    hours = result["train_seconds"] * args.cores / 3600
    rows.append({"variant": name, "kind": kind, "bpd": report["bpd"], "stderr": report["bpd_stderr"],
                 "steps": result["step"], "train_seconds": result["train_seconds"],
                 "images_per_s": result.get("train_images_per_s"),
                 "gain_per_cpu_hour": (math.log2(num_bins) - report["bpd"]) / hours if hours else None,
                 "command": "python -m genfam.main " + " ".join(cmd[3:])})
  with open(os.path.join(args.root, "sweep.json"), "w") as f:
    json.dump(rows, f, indent=2)
  print("| variant | test bpd | steps | train min | images/s | bpd gained / CPU-hour | command |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['variant']} | {r['bpd']:.4f} ± {r['stderr']:.4f} ({r['kind']}) | {r['steps']} | "
          f"{r['train_seconds'] / 60:.1f} | {r['images_per_s'] or 0:.0f} | {r['gain_per_cpu_hour'] or 0:.2f} | "
          f"`{r['command']}` |")


if __name__ == "__main__":
  main()
