"""Sampling speed of a DDPM: images/s of DDPM (T steps) and DDIM at S steps, with a grid each.

  python -m experiments.benchmarks.diffusion_sampling_speed --workdir=runs/ddpm
  python -m experiments.benchmarks.diffusion_sampling_speed --fresh --config=ddpm:smoke --out=/tmp/speed   # no training

With --workdir, the latest checkpoint's EMA parameters are loaded and the
config the run saved (WORKDIR/config.json) is used; with --fresh, a freshly
initialised model of --config (timings only: its samples are noise). For each
setting the whole sampling loop is one jitted call (lax.scan); it is compiled
first (compile time reported apart), then run --repeats times on --num images,
and the fastest run gives images/s. Writes <out>/sampling_speed.json,
<out>/sampling_speed.md (a markdown table) and <out>/samples_<setting>.png.
"""
import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import timing
from genfam.data import sources
from genfam.evaluation import images
from genfam.families import diffusion
from genfam.settings import config_files

DEFAULT_STEPS = (10, 20, 50, 100, 250)


def load_params(args):
  """-> (config, spec, params, inputs): EMA params of a trained workdir, or a fresh model; inputs
  are what the family takes from other runs (a caption model's frozen text encoder)."""
  if args.fresh:
    from genfam.loop import frozen
    path, _, variant = args.config.partition(":")
    config = config_files.load(path, variant)
    spec = sources.dataset_spec(config.data.name)
    inputs = frozen.family_inputs(config, spec)
    family = diffusion.make(config, spec, **inputs)
    batch = {"image": np.zeros((1,) + tuple(spec.image_shape), np.uint8), "label": np.zeros((1,), np.int32)}
    return config, spec, family.eval_params(family.init(jax.random.PRNGKey(config.seed), batch)), inputs
  from genfam.loop import train
  config = config_files.saved(args.workdir, args.config)
  run = train.Run(config, args.workdir)
  state, _, meta = run.restore_or_fail()
  print(f"loaded step {int(meta['step'])} of {args.workdir}", flush=True)
  return config, run.spec, run.family.eval_params(state), run.family_inputs


def time_setting(config, spec, params, *, sampler, steps, num, repeats, eta, spacing, condition, seed, inputs=None):
  """Compiles and times one sampler; -> (row dict, uint8 samples [num, H, W, C])."""
  draw = diffusion.make_sampler(config, spec, sampler=sampler, steps=steps, eta=eta, spacing=spacing,
                                **(inputs or {}))
  rng = jax.random.PRNGKey(seed)
  samples, best, compile_seconds = timing.best_of(
      lambda i: draw(params, jax.random.fold_in(rng, i) if i else rng, num, condition), repeats)
  evals = steps if sampler == "ddim" else config.diffusion.num_steps
  return {"sampler": sampler, "steps": evals, "eta": eta if sampler == "ddim" else None,
          "spacing": spacing if sampler == "ddim" else None, "num_images": num,
          "seconds": best, "images_per_s": num / best, "compile_seconds": compile_seconds}, samples


def markdown(rows, device: str) -> str:
  lines = [f"Sampling speed on {device} ({rows[0]['num_images']} images per call)", "",
           "| sampler | steps | eta | spacing | seconds | images/s | compile s | grid |",
           "|---|---:|---:|---|---:|---:|---:|---|"]
  for r in rows:
    lines.append(f"| {r['sampler']} | {r['steps']} | {'' if r['eta'] is None else r['eta']} | "
                 f"{r['spacing'] or ''} | {r['seconds']:.2f} | {r['images_per_s']:.2f} | "
                 f"{r['compile_seconds']:.1f} | {os.path.basename(r['grid'])} |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="runs/ddpm", help="a trained run (ignored with --fresh)")
  parser.add_argument("--config", default="ddpm", help="config name or path[:variant]")
  parser.add_argument("--fresh", action="store_true", help="time a freshly initialised model")
  parser.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)), help="DDIM step counts S")
  parser.add_argument("--no_ddpm", action="store_true", help="skip DDPM ancestral sampling (T steps)")
  parser.add_argument("--num", type=int, default=64, help="images per sampling call")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--eta", type=float, default=0.0)
  parser.add_argument("--spacing", default="trailing")
  parser.add_argument("--conditional", action="store_true", help="labels 0, 1, .. (guidance from the config)")
  parser.add_argument("--out", default="", help="output folder (default: WORKDIR/sampling_speed)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  config, spec, params, inputs = load_params(args)
  out = args.out or os.path.join(args.workdir, "sampling_speed")
  os.makedirs(out, exist_ok=True)
  T = config.diffusion.num_steps
  condition = jnp.arange(args.num, dtype=jnp.int32) % spec.num_classes if args.conditional else None
  settings = [] if args.no_ddpm else [("ddpm", T)]
  steps = [int(s) for s in args.steps.split(",") if s]
  if any(s > T for s in steps):
    print(f"skipping DDIM steps {[s for s in steps if s > T]}: more than T = {T}", flush=True)
  settings += [("ddim", s) for s in steps if s <= T]
  rows = []
  for sampler, steps in settings:
    row, samples = time_setting(config, spec, params, sampler=sampler, steps=steps, num=args.num,
                                repeats=args.repeats, eta=args.eta, spacing=args.spacing,
                                condition=condition, seed=args.seed, inputs=inputs)
    name = f"ddpm_T{T}" if sampler == "ddpm" else f"ddim_S{steps}_eta{args.eta:g}_{args.spacing}"
    row["grid"] = images.save_grid(os.path.join(out, f"samples_{name}.png"), np.asarray(samples), spec.num_bins,
                                   columns=spec.num_classes if args.conditional else 0)
    rows.append(row)
    print(f"{name}: {row['images_per_s']:.2f} images/s ({row['seconds']:.2f} s for {args.num}, "
          f"compile {row['compile_seconds']:.1f} s)", flush=True)
  device = f"{jax.devices()[0].platform} ({jax.device_count()} device(s), {os.cpu_count()} CPU cores)"
  with open(os.path.join(out, "sampling_speed.json"), "w") as f:
    json.dump({"device": device, "fresh": args.fresh, "workdir": None if args.fresh else args.workdir,
               "rows": rows}, f, indent=2)
  table = markdown(rows, device)
  with open(os.path.join(out, "sampling_speed.md"), "w") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  main()
