"""Training speed of each config, as a fraction of this machine's fp32 and bf16 matmul rates.

  python -m experiments.benchmarks.benchmark_speed                       # the default configs
  python -m experiments.benchmarks.benchmark_speed --configs=glow,realnvp --steps=20 --out=bench.json

For each config it builds the run exactly as the loop does (`genfam.loop.train.Run`),
jits the loop's own guarded update step, and times `--steps` steps after two
warm-up (compiling) steps. The model's FLOPs per step come from XLA's cost
analysis of the compiled step (every operation, elementwise ones included); achieved
FLOP/s = FLOPs/step * steps/s. Beside them, matmul + convolution FLOPs per step as
PyTorch's FlopCounterMode counts them (`experiments/benchmarks/flop_count.py`), the scale on which
`experiments/benchmarks/peer_speed.py` reports the PyTorch peers;
tokens/s = images/s * D (pixels per image: the image-GPT's sequence positions). In the
same process it times an fp32 and a bf16 matmul (N x N @ N x N, 2 N^3 FLOPs;
bf16 with fp32 accumulation, which reaches the AMX units) to give the machine's
attainable rates, and reports achieved / each as a fraction. A config entry may
carry overrides: `igpt@model.dtype=bfloat16` times the image-GPT with bf16 matmuls.
Prints a markdown table and writes JSON.
"""
import argparse
import ast
import json
import os
import resource
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp

from experiments.benchmarks import flop_count
from genfam import sharding
from genfam.cpu import host_memory, xla_cpu
from genfam.loop import train
from genfam.settings import config_files

# The image-GPT at issue 9's minGPT reference architecture (4 blocks), timed against PyTorch's.
DEFAULT_CONFIGS = ("glow", "realnvp", "vae", "ddpm", "igpt@model.depth=4", "gan")


def matmul_flops_per_s(n: int = 2048, reps: int = 10, dtype=jnp.float32) -> float:
  """GEMM rate of this machine through XLA: 2 n^3 FLOPs per product of two n x n
  matrices of `dtype` (bfloat16: products accumulated in float32)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(reps):
    start = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


class CompiledStep:
  """The loop's jitted, guarded update of a config's run, compiled for one fixed batch."""

  def __init__(self, config, workdir: str):
    self.run_ = train.Run(config, workdir)
    self.state = self.run_.init_state()
    self.step_fn = jax.jit(train.guarded_update(self.run_.family.update), donate_argnums=0)
    self.batch = sharding.shard_batch(next(iter(self.run_.loader)), self.run_.mesh)
    self.compiled = self.step_fn.lower(self.state, self.batch, self.run_.train_key).compile()
    self.num_dims = self.run_.spec.num_dims

  def flops(self) -> float:
    """FLOPs of one step from XLA's cost analysis of the compiled step: the analysis is of
    one device's partition of the program, so it is multiplied by the devices."""
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) * self.run_.mesh.size

  def matmul_conv_flops(self) -> int:
    """Matmul + convolution FLOPs of one step (the whole batch), PyTorch's FlopCounterMode
    convention (`experiments/benchmarks/flop_count.py`): the count to put beside a PyTorch peer's."""
    return flop_count.matmul_conv_flops(self.step_fn, self.state, self.batch, self.run_.train_key)

  def run(self, state, steps: int, first: int = 0):
    """`steps` updates from `state` (step keys fold_in(train_key, first + i)), finished."""
    for i in range(steps):
      state, _, _ = self.step_fn(state, self.batch, jax.random.fold_in(self.run_.train_key, first + i))
    jax.block_until_ready(state)
    return state

  def warm_up(self, steps: int = 2):
    """The initial state after `steps` (compiling) updates; the state to time from."""
    state, self.state = self.state, None   # donated
    return self.run(state, steps)


def train_step_speed(config, steps: int) -> dict:
  """images/s and FLOP/s of the loop's jitted update for `config`."""
  with tempfile.TemporaryDirectory() as workdir:
    step = CompiledStep(config, workdir)
    flops = step.flops()
    matmul_conv = step.matmul_conv_flops()
    state = step.warm_up(2)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    step.run(state, steps, first=2)
    seconds = (time.perf_counter() - start) / steps
    after = resource.getrusage(resource.RUSAGE_SELF)
    num_dims = step.num_dims
  batch = config.data.batch_size
  return {"batch_size": batch, "seconds_per_step": seconds, "images_per_s": batch / seconds,
          # the kernel's share: pages faulted in (first touch of freshly mapped memory) and system time
          "minor_page_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
          "system_seconds_per_step": (after.ru_stime - before.ru_stime) / steps,
          "malloc": host_memory.malloc_in_use(),
          "malloc_retain_mib": config.train.malloc_retain_mib, "huge_pages": host_memory.huge_pages_on(),
          "tokens_per_s": batch * num_dims / seconds,
          "flops_per_step": flops, "flops_per_s": flops / seconds,
          "matmul_conv_flops_per_step": matmul_conv, "matmul_conv_flops_per_s": matmul_conv / seconds}


def parse_entry(entry: str):
  """'name[:variant][@key=value@key=value]' -> (name, variant, {key: value}): a config and
  overrides, e.g. 'igpt@model.dtype=bfloat16' (values parsed as Python literals where they are)."""
  name, *sets = entry.split("@")
  path, _, variant = name.partition(":")
  return path, variant, parse_overrides(sets)


def parse_overrides(items) -> dict:
  """['key=value', ...] -> {key: value}, values parsed as Python literals where they are."""
  overrides = {}
  for item in items:
    key, _, value = item.partition("=")
    try:
      overrides[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[key] = value
  return overrides


def load_entry(entry: str):
  """The config of a --configs entry with its overrides set (as --config.key=value would)."""
  path, variant, overrides = parse_entry(entry)
  config = config_files.apply_overrides(config_files.load(path, variant), overrides)
  config.train.progress = False
  return config


def run_settings() -> dict:
  """What a timing depends on besides the config: XLA flags, the CPUs this process may use,
  devices, versions and the commit."""
  try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    commit = ""
  return {"xla_flags": os.environ.get("XLA_FLAGS", ""), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
          "malloc": host_memory.malloc_in_use(), "ld_preload": os.environ.get("LD_PRELOAD", ""),
          "cpus": xla_cpu.usable_cores(),
          "devices": f"{jax.device_count()} x {jax.devices()[0].platform}", "jax": jax.__version__,
          "commit": commit or "unknown"}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                      help="comma-separated config[:variant][@key=value...], e.g. igpt,igpt@model.dtype=bfloat16")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--out", default="benchmark_speed.json")
  args = parser.parse_args()
  configs = {name: load_entry(name) for name in args.configs.split(",")}
  host_memory.restart_for_configs(configs.values())   # as genfam.main would start them, where they agree
  peak = matmul_flops_per_s()
  peak_bf16 = matmul_flops_per_s(dtype=jnp.bfloat16)
  rows = {}
  for name, config in configs.items():
    wanted = host_memory.malloc_for(config.train.malloc)
    if wanted != host_memory.malloc_in_use():
      print(f"note: {name} has train.malloc={config.train.malloc!r}, this process runs "
            f"{host_memory.malloc_in_use()}'s malloc: genfam.main would run it with {wanted}'s", flush=True)
    elif wanted == "glibc" and config.train.huge_pages != host_memory.huge_pages_on():
      # glibc reads its tunables at start, so one process cannot follow each config's train.huge_pages
      print(f"note: {name} has train.huge_pages={config.train.huge_pages}, this process runs "
            f"{'with' if host_memory.huge_pages_on() else 'without'} GLIBC_TUNABLES=glibc.malloc.hugetlb=1: "
            f"genfam.main would run it {'with' if config.train.huge_pages else 'without'}", flush=True)
    rows[name] = train_step_speed(config, args.steps)
    rows[name]["overrides"] = parse_entry(name)[2]
    rows[name]["fraction_of_matmul"] = rows[name]["flops_per_s"] / peak
    rows[name]["fraction_of_bf16_matmul"] = rows[name]["flops_per_s"] / peak_bf16
  result = {"settings": run_settings(), "devices": [str(d) for d in jax.devices()], "matmul_flops_per_s": peak,
            "bf16_matmul_flops_per_s": peak_bf16, "configs": rows,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print("settings: " + ", ".join(f"{k} {v!r}" for k, v in result["settings"].items()))
  print(f"fp32 matmul (2048^3, XLA, {jax.device_count()} device(s) {jax.devices()[0].platform}): "
        f"{peak / 1e9:.1f} GFLOP/s; bf16 matmul (fp32 accumulation): {peak_bf16 / 1e9:.1f} GFLOP/s")
  print("| config | batch | images/s | tokens/s | GFLOP/step | achieved GFLOP/s | fraction of fp32 matmul | "
        "fraction of bf16 matmul | matmul+conv GFLOP/step | matmul+conv GFLOP/s | page faults/step | "
        "kernel s/step |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for name, r in rows.items():
    print(f"| {name} | {r['batch_size']} | {r['images_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
          f"{r['flops_per_step'] / 1e9:.2f} | "
          f"{r['flops_per_s'] / 1e9:.1f} | {r['fraction_of_matmul']:.1%} | {r['fraction_of_bf16_matmul']:.1%} | "
          f"{r['matmul_conv_flops_per_step'] / 1e9:.2f} | {r['matmul_conv_flops_per_s'] / 1e9:.1f} | "
          f"{r['minor_page_faults_per_step']:.0f} | {r['system_seconds_per_step']:.3f} |")


if __name__ == "__main__":
  main()
