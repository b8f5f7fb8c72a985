"""Evaluation speed of every bound, in float32 and bfloat16, on trained runs.

  python -m experiments.benchmarks.benchmark_eval runs/compare/glow runs/compare/vae runs/compare/ddpm \\
      --num_examples=32 --dtypes=float32,bfloat16 --out=eval_bench.json
  python -m experiments.benchmarks.benchmark_eval runs/compare/gan --set=eval.ais_steps=50 --set=eval.ais_chains=2

For each workdir it restores the latest checkpoint under the run's own config
(config.json, with any --set overrides) with `model.dtype` set to each of `--dtypes` (a compute-only key:
the parameters are the same), evaluates every likelihood the family reports
(its main bound and extras such as IWAE-1000 or the sampled-t DDPM estimate) on
the first `--num_examples` test images exactly as `--mode=eval` does, after one
untimed batch that compiles, and reports per bound: test images/s, the hours the
whole test split would take at that rate, the bits/dim, and bfloat16's bits/dim
minus float32's on the same images and noise (each draw uses the same keys).
Markdown to stdout, JSON to --out. Nothing is written into the workdirs. Like
`genfam.main`, it first restarts itself under the runs' `train.malloc` (and `train.huge_pages`)
where they agree (`genfam.cpu.host_memory`), and records the allocator in its settings.
"""
import argparse
import json
import time

import jax

from experiments.benchmarks.benchmark_speed import parse_overrides, run_settings
from genfam.cpu import host_memory
from genfam.loop import train
from genfam.settings import config_files


def evaluate_speed(workdir: str, dtype: str, num_examples: int, batch_size: int = 0,
                   overrides: dict | None = None) -> dict:
  """{kind: {'bpd', 'bpd_stderr', 'num_examples', 'seconds', 'images_per_s'}} of `workdir`'s
  latest checkpoint evaluated with model.dtype = `dtype` on the first `num_examples` test images."""
  config = config_files.saved(workdir)
  if config is None:
    raise SystemExit(f"error: {workdir} has no config.json: pass the workdir of a trained run")
  config_files.apply_overrides(config, overrides or {})
  config.model.dtype = dtype
  config.train.progress = False
  if "extra_num_examples" in config.eval:
    config.eval.extra_num_examples = 0                                      # extras on the same images
  if batch_size:
    config.eval.batch_size = batch_size
  run = train.Run(config, workdir)
  state, _, _ = run.restore_or_fail()
  key = jax.random.fold_in(run.eval_key, train.FINAL_EVAL)
  # compiles every bound, on every device (a CPU split into devices runs batch i on device i mod n)
  run.evaluate(state, config.eval.batch_size * jax.local_device_count(), extras=True, key=key)
  out = {}
  for kind, report in run.evaluate(state, num_examples, extras=True, key=key).items():
    if "bpd" not in report:
      continue
    out[kind] = {"bpd": report["bpd"], "bpd_stderr": report["bpd_stderr"], "num_examples": report["num_examples"],
                 "seconds": report["seconds"], "images_per_s": report["num_examples"] / report["seconds"],
                 "test_split_hours": len(run.sources["test"]) / (report["num_examples"] / report["seconds"]) / 3600}
  return out


def markdown(rows: list[dict]) -> str:
  lines = ["| run | bound | dtype | test images | images/s | whole test split | bits/dim | bf16 - fp32 |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    diff = "" if r.get("bpd_minus_float32") is None else f"{r['bpd_minus_float32']:+.4f}"
    lines.append(f"| {r['workdir']} | {r['kind']} | {r['dtype']} | {r['num_examples']} | {r['images_per_s']:.2f} | "
                 f"{r['test_split_hours']:.1f} h | {r['bpd']:.4f} ± {r['bpd_stderr']:.4f} | {diff} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+", help="workdirs of trained runs")
  parser.add_argument("--num_examples", type=int, default=32, help="first test images per bound")
  parser.add_argument("--dtypes", default="float32,bfloat16", help="model.dtype values, float32 first")
  parser.add_argument("--batch_size", type=int, default=0, help="eval.batch_size (0: each run's own)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config override for every run, e.g. eval.ais_steps=50 (repeatable)")
  parser.add_argument("--out", default="", help="JSON output path")
  args = parser.parse_args()
  overrides = parse_overrides(args.set)
  saved = [config_files.apply_overrides(c, overrides) for c in map(config_files.saved, args.workdirs) if c is not None]
  host_memory.restart_for_configs(saved)   # as genfam.main --mode=eval would start them, where they agree
  rows = []
  for workdir in args.workdirs:
    reference = {}
    for dtype in args.dtypes.split(","):
      start = time.perf_counter()
      for kind, r in evaluate_speed(workdir, dtype, args.num_examples, args.batch_size, overrides).items():
        reference.setdefault(kind, r["bpd"])
        rows.append({"workdir": workdir, "kind": kind, "dtype": dtype, **r,
                     "bpd_minus_float32": None if dtype == "float32" else r["bpd"] - reference[kind]})
      print(f"{workdir} {dtype}: {time.perf_counter() - start:.0f} s", flush=True)
  print("\nsettings: " + ", ".join(f"{k} {v!r}" for k, v in run_settings().items()) + "\n")
  print(markdown(rows))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
