"""Where a training step's time goes: one jax.profiler trace per config, by XLA operation.

  python -m experiments.probes.profile_step                          # the default configs
  python -m experiments.probes.profile_step --configs=glow,ddpm@model.dtype=bfloat16 --steps=5

For each config it builds the loop's jitted update exactly as `benchmark_speed`
does, runs two warm-up steps, then traces `--steps` steps with `jax.profiler`
(a Perfetto trace). XLA:CPU records one trace event per executed operation
(thunk) under the operation's HLO name; each is mapped through the compiled
HLO module to what it computes and to the JAX code it came from:

  conv / matmul   a convolution or dot (alone, or the heart of a fusion), split
                  into forward (the loss's own ops) and backward (JAX's
                  transpose of them: input and weight gradients);
  layout copy     transposes and copies (with whatever elementwise work XLA fused
                  into them);
  reduction       a reduce (sums, log-dets, norms' statistics);
  random          threefry random bits;
  elementwise     every other fusion (activations, normalisation, the optimizer).

With --eval it profiles one evaluation batch of each family's main likelihood
(a fresh model's, on the first test images) instead: the DDPM bound's T
network passes, a flow's exact log-density, the GAN's AIS chains.

Reported per config: wall-clock ms per step while traced (and untraced: the
trace's overhead), the summed time of all operations
per step and their ratio (operations running at once: about 1 when a step runs
on one thread, up to the core count when XLA splits them), each category's share
of the summed time, and the heaviest operations with their JAX source. Markdown
to stdout, JSON to --out.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax

from experiments.benchmarks.benchmark_speed import DEFAULT_CONFIGS, CompiledStep, load_entry
from genfam import sharding
from genfam.loop import train

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = .*?\s([a-z][\w-]*)\((.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%(\S+) .*\{\s*$")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
HEAVY = ("convolution", "dot")
CONTAINERS = {"while", "conditional", "call"}


def parse_hlo(text: str) -> tuple[dict, dict]:
  """Optimized HLO text -> ({instruction: (opcode, called computation, op_name)},
  {computation: names of its instructions, those of computations it calls included})."""
  instructions, members, calls, current = {}, collections.defaultdict(list), collections.defaultdict(set), None
  for line in text.splitlines():
    header = _COMPUTATION.match(line)
    if header:
      current = header.group(1)
      continue
    m = _INSTRUCTION.match(line)
    if not m or current is None:
      continue
    name, opcode, rest = m.groups()
    called = _CALLS.search(rest)
    op_name = _OP_NAME.search(rest)
    instructions[name] = (opcode, called.group(1) if called else None, op_name.group(1) if op_name else "")
    members[current].append(name)
    if called:
      calls[current].add(called.group(1))

  def closure(comp, seen=()):
    out = list(members.get(comp, ()))
    for c in calls.get(comp, ()):
      if c not in seen:
        out += closure(c, seen + (comp,))
    return out

  return instructions, {c: closure(c) for c in members}


def category(name: str, instructions: dict, contents: dict) -> str | None:
  """The category of the executed operation `name` (None for containers and non-HLO events).

  A convolution or dot is backward when JAX named it a transpose (its input
  gradient) or when it carries no JAX name at all: XLA rewrites the weight
  gradient of a convolution into a new convolution whose window is the whole
  image, and drops its name on the way."""
  if name not in instructions:
    return None
  opcode, called, op_name = instructions[name]
  if opcode in CONTAINERS:
    return None
  inside = [name] + list(contents.get(called, ()))
  opcodes = {instructions[i][0] for i in inside}
  for heavy, label in (("convolution", "conv"), ("dot", "matmul")):
    names = [instructions[i][2] for i in inside if instructions[i][0] == heavy]
    if names:
      backward = any(not n or "transpose(" in n for n in names)
      return f"{label} ({'backward' if backward else 'forward'})"
  if "rng-bit-generator" in opcodes or "threefry" in op_name or "random_bits" in op_name:
    return "random"
  if opcodes & {"reduce", "reduce-window"}:
    return "reduction"
  if opcodes & {"transpose", "copy"}:
    return "layout copy"
  return "elementwise"


def source(name: str, instructions: dict, contents: dict) -> str:
  """The JAX operation an executed HLO operation came from (its heaviest part's, for a fusion)."""
  opcode, called, op_name = instructions[name]
  inside = [name] + list(contents.get(called, ()))
  named = [instructions[i][2] for i in inside if instructions[i][0] in HEAVY and instructions[i][2]]
  named = named or [op_name] + [instructions[i][2] for i in inside if instructions[i][2]]
  return next((n for n in named if n), "(no JAX name: rewritten by XLA)").split("/")[-1]


def trace_events(directory: str) -> list[dict]:
  """The complete ('X') events of the Perfetto trace jax.profiler wrote under `directory`."""
  path = glob.glob(os.path.join(directory, "**", "perfetto_trace.json.gz"), recursive=True)[0]
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  return [e for e in events if e.get("ph") == "X"]


class EvalStep:
  """The family's main likelihood, jitted, on the first evaluation batch of a fresh model
  (what `--mode=eval` runs per batch), timed like a training step."""

  def __init__(self, config, workdir: str):
    from genfam.data import pipeline
    run = train.Run(config, workdir)
    self.params = run.family.eval_params(run.init_state())
    batch, _ = next(pipeline.eval_batches(run.sources["test"], config.eval.batch_size))
    self.batch = sharding.shard_batch(batch, run.mesh)
    self.fn = jax.jit(run.family.log_likelihood)
    self.key = run.eval_key
    self.compiled = self.fn.lower(self.params, self.batch, self.key).compile()

  def warm_up(self, steps: int = 2):
    return self.run(None, steps)

  def run(self, state, steps: int, first: int = 0):
    for i in range(steps):
      out = self.fn(self.params, self.batch, jax.random.fold_in(self.key, first + i))
    jax.block_until_ready(out)
    return state


def profile(config, steps: int, evaluation: bool = False) -> dict:
  """Per-step time by category for `config`'s training step, or with `evaluation` for one
  batch of its main likelihood (see the module docstring)."""
  with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryDirectory() as trace_dir:
    step = EvalStep(config, workdir) if evaluation else CompiledStep(config, workdir)
    instructions, contents = parse_hlo(step.compiled.as_text())
    state = step.warm_up(2)
    start = time.perf_counter()
    state = step.run(state, steps, first=2)
    untraced = (time.perf_counter() - start) / steps
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      start = time.perf_counter()
      state = step.run(state, steps, first=2 + steps)
      wall = (time.perf_counter() - start) / steps     # the trace's own export is left out
    events = trace_events(trace_dir)
  by_category, by_op = collections.Counter(), collections.Counter()
  for e in events:
    c = category(e["name"], instructions, contents)
    if c is not None:
      by_category[c] += e.get("dur", 0.0) / 1e3 / steps     # microseconds -> ms per step
      by_op[e["name"]] += e.get("dur", 0.0) / 1e3 / steps
  total = sum(by_category.values())
  top = [{"op": name, "ms": ms, "category": category(name, instructions, contents),
          "source": source(name, instructions, contents)}
         for name, ms in by_op.most_common(8)]
  return {"wall_ms_per_step": wall * 1e3, "untraced_ms_per_step": untraced * 1e3, "op_ms_per_step": total,
          "ops_at_once": total / (wall * 1e3),
          "share": {k: v / total for k, v in by_category.most_common()},
          "ms": dict(by_category.most_common()), "top_ops": top,
          "batch_size": config.eval.batch_size if evaluation else config.data.batch_size}


def markdown(results: dict) -> str:
  cats = sorted({c for r in results.values() for c in r["share"]},
                key=lambda c: -sum(r["share"].get(c, 0) for r in results.values()))
  lines = ["| config | batch | ms/step (untraced) | traced | op ms/step | ops at once | " + " | ".join(cats) + " |",
           "|---|---:|---:|---:|---:|---:|" + "---:|" * len(cats)]
  for name, r in results.items():
    lines.append(f"| {name} | {r['batch_size']} | {r['untraced_ms_per_step']:.0f} | {r['wall_ms_per_step']:.0f} | "
                 f"{r['op_ms_per_step']:.0f} | "
                 f"{r['ops_at_once']:.2f} | " + " | ".join(f"{100 * r['share'].get(c, 0):.0f}%" for c in cats) + " |")
  for name, r in results.items():
    lines.append(f"\n{name}, heaviest operations (ms/step): " + "; ".join(
        f"{t['op']} {t['ms']:.1f} ({t['category']}: {t['source']})" for t in r["top_ops"][:5]))
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                      help="comma-separated config[:variant][@key=value...], as benchmark_speed's")
  parser.add_argument("--steps", type=int, default=3, help="traced steps per config")
  parser.add_argument("--eval", action="store_true",
                      help="profile one evaluation batch of each family's main likelihood instead of a training step")
  parser.add_argument("--out", default="", help="JSON output path")
  args = parser.parse_args()
  results = {}
  for entry in args.configs.split(","):
    results[entry] = profile(load_entry(entry), args.steps, evaluation=args.eval)
    print(f"{entry}: {results[entry]['wall_ms_per_step']:.0f} ms/step", flush=True)
  print(f"\ndevices: {jax.device_count()} x {jax.devices()[0].platform}, cores: {len(os.sched_getaffinity(0))}\n")
  print(markdown(results))
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"devices": jax.device_count(), "cores": len(os.sched_getaffinity(0)), "results": results}, f,
                indent=2)


if __name__ == "__main__":
  main()
