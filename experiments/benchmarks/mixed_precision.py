"""Test bits/dim after the same training steps in float32 and in mixed precision
(model.dtype=bfloat16), per family: real runs, not smoke configs.

  python -m experiments.benchmarks.mixed_precision --root=runs/mixed_precision            # the default entries
  taskset -c 1 nice python -m experiments.benchmarks.mixed_precision --root=runs/mixed_precision \
      --entries=glow@train.num_steps=300 --out=experiments/results/mixed_precision

Every entry ('config[:variant][@key=value...]', as experiments.benchmarks.benchmark_speed takes them) is
trained twice as an ordinary `python -m genfam.main` run (a subprocess each) in
ROOT/<entry>/float32 and ROOT/<entry>/bfloat16, identical but for model.dtype: the same
seed, data order, number of steps and test images. The runs are resumable: a rerun
continues an interrupted one, and a finished one is only read (its results.json). The
table gives each run's first test bound (the family's headline kind, evaluated with the
run's own dtype) with its standard error, the difference bf16 - fp32, and each run's
training images/s. Both runs see the same test images, so the difference is paired: its
noise is far below the standard errors, which measure the spread over images.
"""
import argparse
import json
import os
import subprocess
import sys

from experiments.benchmarks.benchmark_speed import parse_entry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/<group>/<module>.py
DTYPES = ("float32", "bfloat16")
# Minutes to an hour on one core each; every run's eval set is the first test images.
DEFAULT_ENTRIES = (
    "glow@train.num_steps=1000@eval.num_examples=500",
    "realnvp@train.num_steps=300@eval.num_examples=500",
    "vae@train.num_steps=1000@eval.num_examples=500",
    "ddpm@train.num_steps=200@eval.num_examples=20@eval.batch_size=20",
    "igpt@train.num_steps=150@eval.num_examples=200",
    "gan@train.num_steps=600@eval.num_examples=20@eval.batch_size=20@eval.ais_steps=100@eval.ais_chains=2",
)


def run_dir(root: str, entry: str, dtype: str) -> str:
  return os.path.join(root, entry.replace("@", "_").replace("/", "_").replace(":", "-"), dtype)


def command(entry: str, dtype: str, workdir: str) -> list[str]:
  """The genfam.main command of one run (overrides as --config.key=value flags)."""
  path, variant, overrides = parse_entry(entry)
  config = os.path.join(REPO, "configs", f"{path}.py") + (f":{variant}" if variant else "")
  flags = [f"--config.{k}={v}" for k, v in {**overrides, "model.dtype": dtype, "train.progress": False}.items()]
  return [sys.executable, "-m", "genfam.main", f"--config={config}", f"--workdir={workdir}", *flags]


def headline(results: dict) -> dict:
  """The first test bound of a results.json (the family's own kind)."""
  kind = next(k for k in results["test"] if k != "metrics")
  return {"kind": kind, **{k: results["test"][kind][k] for k in ("bpd", "bpd_stderr", "num_examples")}}


def run_entry(root: str, entry: str) -> dict:
  row = {"entry": entry}
  for dtype in DTYPES:
    workdir = run_dir(root, entry, dtype)
    results_path = os.path.join(workdir, "results.json")
    if not os.path.exists(results_path):
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "mixed_precision.log"), "a") as log:
        subprocess.run(command(entry, dtype, workdir), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    with open(results_path) as f:
      results = json.load(f)
    row[dtype] = {**headline(results), "step": results["step"], "train_images_per_s": results["train_images_per_s"]}
  row["difference"] = row["bfloat16"]["bpd"] - row["float32"]["bpd"]
  return row


def _rate(value) -> str:
  return "n/a" if value is None else f"{value:.1f}"     # None: too few steps to time


def table(rows) -> str:
  lines = ["| entry | bound | test images | steps | fp32 bits/dim | bf16 bits/dim | bf16 - fp32 | relative | "
           "fp32 train img/s | bf16 train img/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    f, b = r["float32"], r["bfloat16"]
    lines.append(f"| {r['entry']} | {f['kind']} | {f['num_examples']} | {f['step']} | {f['bpd']:.4f} ± {f['bpd_stderr']:.4f} | "
                 f"{b['bpd']:.4f} ± {b['bpd_stderr']:.4f} | {r['difference']:+.4f} | {r['difference'] / f['bpd']:+.2%} | "
                 f"{_rate(f['train_images_per_s'])} | {_rate(b['train_images_per_s'])} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="runs/mixed_precision")
  parser.add_argument("--entries", default=",".join(DEFAULT_ENTRIES))
  parser.add_argument("--out", default="", help="folder for mixed_precision.md / .json")
  args = parser.parse_args()
  rows = []
  for entry in args.entries.split(","):
    rows.append(run_entry(args.root, entry))
    print(table(rows[-1:]), flush=True)
  text = table(rows)
  print(text)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "mixed_precision.md"), "w") as f:
      f.write(f"python -m experiments.benchmarks.mixed_precision --root={args.root} --entries={args.entries}\n\n{text}\n")
    with open(os.path.join(args.out, "mixed_precision.json"), "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
