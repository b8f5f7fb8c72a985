"""Sampling speed of latent diffusion against pixel-space diffusion at the same number of DDIM steps.

  python -m experiments.benchmarks.latent_diffusion_speed                      # configs at full size, fresh weights
  python -m experiments.benchmarks.latent_diffusion_speed --smoke --num=4 --steps=2 --out=/tmp/speed   # tiny (the test's)
  python -m experiments.benchmarks.latent_diffusion_speed --latent_workdir=runs/latent_diffusion --pixel_workdir=runs/ddpm

Both in one process, on the same device: configs/latent_diffusion.py (DDIM over S steps of its U-Net on
the 7 x 7 x 4 latent grid, then the stage-1 decoder: one decoder pass per image) and configs/ddpm.py (DDIM
over S steps of its U-Net on the 28 x 28 image), unconditional (the null condition: one network call a
step for both). The latent model is timed with each --decode: the decoder's mode (its most probable grey
level per pixel, found by a loop over the K = 256 levels: a fixed cost per image) and a draw from p(x|z).
Weights: fresh (the timings do not depend on them; the stage 1 of a fresh latent model is
configs/latent_autoencoder.py at its initial weights), or the EMA weights of trained workdirs (a latent
workdir brings its stage 1 through the loop). Each sampler is one jitted call; it is compiled and run
once, then run --repeats times on --num images, and the fastest gives images/s.
Writes <out>/latent_diffusion_speed.json and .md (default out: experiments/results/two_stage).
"""
import argparse
import json
import os

import jax
import numpy as np

from experiments.benchmarks import timing
from genfam import registry
from genfam.data import sources
from genfam.families import diffusion
from genfam.loop import frozen
from genfam.settings import config_files

DEFAULT_STEPS = (10, 50, 100)


def _count(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def _fresh_params(family, spec, seed):
  return family.eval_params(family.init(jax.random.PRNGKey(seed), frozen.example_batch(spec, 1)))


def _trained(config_name, workdir):
  """(config, spec, params, inputs) of a trained workdir: its own config.json, EMA weights, and the frozen
  models it names (restored as the loop restores them)."""
  from genfam.loop import train
  run = train.Run(config_files.saved(workdir, f"configs/{config_name}.py"), workdir)
  state, _, meta = run.restore_or_fail()
  print(f"loaded step {int(meta['step'])} of {workdir}", flush=True)
  return run.config, run.spec, run.family.eval_params(state), run.family_inputs


def latent_model(args):
  """-> (config, spec, params, inputs) of the latent diffusion model."""
  if args.latent_workdir:
    return _trained("latent_diffusion", args.latent_workdir)
  variant = "smoke" if args.smoke else ""
  config = config_files.load("latent_diffusion", variant)
  stage_one = config_files.load("latent_autoencoder", variant)
  spec = sources.dataset_spec(config.data.name)
  autoencoder_family = registry.make_family(stage_one, spec)
  autoencoder = frozen.Frozen(stage_one, spec, _fresh_params(autoencoder_family, spec, args.seed),
                              dict(autoencoder_family.exports), 0)
  family = registry.make_family(config, spec, autoencoder=autoencoder)
  return config, spec, _fresh_params(family, spec, args.seed), {"autoencoder": autoencoder}


def pixel_model(args):
  """-> (config, spec, params, inputs) of the pixel-space DDPM."""
  if args.pixel_workdir:
    return _trained("ddpm", args.pixel_workdir)
  config = config_files.load("ddpm", "smoke" if args.smoke else "")
  spec = sources.dataset_spec(config.data.name)
  return config, spec, _fresh_params(diffusion.make(config, spec), spec, args.seed), {}


def _time(draw, num, repeats, seed):
  """(best seconds, compile seconds) of draw(rng) on `num` images; the first call compiles."""
  rng = jax.random.PRNGKey(seed)
  _, best, compile_seconds = timing.best_of(lambda i: draw(jax.random.fold_in(rng, i) if i else rng), repeats)
  return best, compile_seconds


def measure(args) -> dict:
  latent_config, latent_spec, latent_params, latent_inputs = latent_model(args)
  pixel_config, pixel_spec, pixel_params, pixel_inputs = pixel_model(args)
  rows = []
  for steps in args.steps:
    models = []
    for how in args.decode:   # the stage-1 decoder's mode (a loop over the K grey levels) or a draw from it
      config = latent_config.copy_and_resolve_references()
      config.sample.ddim_steps, config.sample.decode = steps, how
      latent = registry.make_family(config, latent_spec, **latent_inputs)
      models.append((f"latent_diffusion (decode={how})",
                     lambda r, latent=latent: latent.sample(latent_params, r, args.num, None), latent_params))
    pixel = diffusion.make_sampler(pixel_config, pixel_spec, sampler="ddim", steps=steps, guidance=1.0,
                                   **pixel_inputs)
    models.append(("ddpm", lambda r: pixel(pixel_params, r, args.num, None), pixel_params))
    for name, draw, params in models:
      seconds, compile_seconds = _time(draw, args.num, args.repeats, args.seed)
      rows.append({"model": name, "ddim_steps": steps, "network_calls_per_image": steps, "num_images": args.num,
                   "seconds": seconds, "images_per_s": args.num / seconds, "compile_seconds": compile_seconds,
                   "parameters": _count(params)})
      print(f"{name:32s} S={steps:4d}: {args.num / seconds:9.2f} images/s ({seconds:.3f} s, "
            f"compile {compile_seconds:.1f} s)", flush=True)
    pixel_row = rows[-1]
    for row in rows[-len(models):-1]:
      row["speedup_vs_ddpm"] = row["images_per_s"] / pixel_row["images_per_s"]
  return {"what": "images/s of DDIM sampling, latent (then decoded) against pixel-space diffusion",
          "device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(),
          "latent": args.latent_workdir or f"fresh configs/latent_diffusion.py{':smoke' if args.smoke else ''}",
          "pixel": args.pixel_workdir or f"fresh configs/ddpm.py{':smoke' if args.smoke else ''}",
          "repeats": args.repeats, "rows": rows}


def markdown(result) -> str:
  lines = [f"DDIM sampling speed on {result['device']} ({result['rows'][0]['num_images']} images per call; "
           f"latent: {result['latent']}, pixel: {result['pixel']})", "",
           "| model | DDIM steps | images/s | seconds | compile s | parameters | latent / pixel |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for r in result["rows"]:
    ratio = f"{r['speedup_vs_ddpm']:.2f}x" if "speedup_vs_ddpm" in r else ""
    lines.append(f"| {r['model']} | {r['ddim_steps']} | {r['images_per_s']:.2f} | {r['seconds']:.3f} | "
                 f"{r['compile_seconds']:.1f} | {r['parameters']:,} | {ratio} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), help="DDIM steps S")
  parser.add_argument("--num", type=int, default=256, help="images per sampler call")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--smoke", action="store_true", help="the configs' smoke variants (digits, tiny nets)")
  parser.add_argument("--decode", nargs="+", default=["mode", "sample"], choices=["mode", "sample"],
                      help="the latent model's stage-1 decoding: each pixel's most probable bin, and/or a draw")
  parser.add_argument("--latent_workdir", default="", help="a trained configs/latent_diffusion.py workdir")
  parser.add_argument("--pixel_workdir", default="", help="a trained configs/ddpm.py workdir")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=os.path.join("experiments", "results", "two_stage"))
  args = parser.parse_args(argv)
  result = measure(args)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "latent_diffusion_speed.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(args.out, "latent_diffusion_speed.md"), "w") as f:
    f.write(markdown(result))
  print(markdown(result))
  return result


if __name__ == "__main__":
  main()
