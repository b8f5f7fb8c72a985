"""Sampling speed of the two-stage code prior against the pixel image-GPT, in the same process.

  python -m experiments.benchmarks.two_stage_sampling_speed                  # configs/code_prior.py (on a fresh
                                                                  # configs/vqvae.py) vs configs/igpt.py
  python -m experiments.benchmarks.two_stage_sampling_speed --smoke --num=4  # the smoke variants (digits), seconds
  python -m experiments.benchmarks.two_stage_sampling_speed --prior_workdir=runs/code_prior --igpt_workdir=runs/igpt

Note 002's trade-off, measured: the code prior draws an image as h x w codes, one sequential
transformer step each with the key-value cache (49 for Fashion-MNIST's 7x7 grid), then one
parallel pass of the stage-1 decoder; the pixel image-GPT draws it as D pixels, one cached step
each (784). Both are the families' own `sample` (one jitted program: prefill, a lax.scan over the
positions; for the code prior the decoder's draw as well), compiled first (compile seconds
reported apart), then run --repeats times; the fastest run gives images/s. Both models sample
unconditionally. Without workdirs the models are freshly initialised, with a random head so
that the draws are not uniform (speed does not depend on the weights: the same operations
run). Writes --out (JSON) and prints a markdown table.
"""
import argparse
import json

import jax
import numpy as np

from experiments.benchmarks import timing
from genfam import registry
from genfam.data import sources
from genfam.loop import frozen
from genfam.settings import config_files


def _batch(spec, num=8):
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, spec.num_bins, (num, *spec.image_shape)).astype(np.uint8),
          "label": np.zeros((num,), np.int32), "caption": np.zeros((num, spec.caption_length), np.int32)}


def _fresh(config, spec, **inputs):
  """(family, params): a freshly initialised family of `config`, with a random N(0, 0.02^2) head."""
  family = registry.make_family(config, spec, **inputs)
  params = family.eval_params(jax.jit(family.init)(jax.random.PRNGKey(config.seed), _batch(spec)))
  if "head" in params:
    params["head"]["kernel"] = 0.02 * jax.random.normal(jax.random.PRNGKey(1), params["head"]["kernel"].shape)
  return family, params


def _trained(workdir):
  """(config, family, params) of a trained workdir (its own config.json; a code prior's stage 1 too)."""
  from genfam.loop import train
  config = config_files.saved(workdir)
  run = train.Run(config, workdir)
  state, _, meta = run.restore_or_fail()
  print(f"loaded step {int(meta['step'])} of {workdir}", flush=True)
  return config, run.family, run.family.eval_params(state)


def models(args):
  """-> {'code_prior': (config, family, params, sequential calls), 'igpt': (...)}."""
  variant = "smoke" if args.smoke else ""
  if args.prior_workdir:
    prior_config, prior, prior_params = _trained(args.prior_workdir)
  else:
    ae_config = config_files.load("vqvae", variant)
    spec = sources.dataset_spec(ae_config.data.name)
    ae, ae_params = _fresh(ae_config, spec)
    autoencoder = frozen.Frozen(ae_config, spec, ae_params, dict(ae.exports), 0)
    prior_config = config_files.load("code_prior", variant)
    prior, prior_params = _fresh(prior_config, spec, autoencoder=autoencoder)
  if args.igpt_workdir:
    igpt_config, pixel, pixel_params = _trained(args.igpt_workdir)
  else:
    igpt_config = config_files.load("igpt", variant)
    pixel, pixel_params = _fresh(igpt_config, sources.dataset_spec(igpt_config.data.name))
  if prior_config.data.name != igpt_config.data.name:
    raise SystemExit(f"the code prior is on {prior_config.data.name!r}, the image-GPT on {igpt_config.data.name!r}: "
                     "compare models of one dataset")
  spec = sources.dataset_spec(prior_config.data.name)
  codes = int(np.prod(prior_params["pos_embed"].shape[:1]))        # h * w positions of the code prior
  return spec, {"code_prior": (prior_config, prior, prior_params, codes),
                "igpt": (igpt_config, pixel, pixel_params, spec.num_dims)}


def time_sampler(name, config, family, params, steps: int, num: int, repeats: int):
  """-> (row, uint8 samples [num, H, W, C])."""
  rng = jax.random.PRNGKey(0)
  samples, best, compile_seconds = timing.best_of(lambda i: family.sample(params, rng, num), repeats)
  m = config.model
  return {"model": name, "sequential_steps": steps, "decoder_passes": 1 if name == "code_prior" else 0,
          "num": num, "seconds": best, "images_per_s": num / best, "seconds_per_image": best / num,
          "compile_seconds": compile_seconds, "sampler": config.sample.sampler,
          "transformer": {k: m[k] for k in ("width", "depth", "num_heads", "mlp_ratio", "dtype")}}, np.asarray(samples)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--smoke", action="store_true", help="the configs' smoke variants (digits, tiny models)")
  parser.add_argument("--prior_workdir", default="", help="a trained configs/code_prior.py run (else fresh)")
  parser.add_argument("--igpt_workdir", default="", help="a trained configs/igpt.py run (else fresh)")
  parser.add_argument("--num", type=int, default=16, help="images per timed call, both models")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--out", default="two_stage_sampling_speed.json")
  args = parser.parse_args(argv)
  spec, found = models(args)
  rows = []
  for name, (config, family, params, steps) in found.items():
    row, samples = time_sampler(name, config, family, params, steps, args.num, args.repeats)
    assert samples.shape == (args.num, *spec.image_shape) and samples.dtype == np.uint8
    rows.append(row)
  prior, pixel = rows
  result = {"devices": [str(d) for d in jax.devices()], "dataset": spec.name, "num_dims": spec.num_dims,
            "trained": {"code_prior": args.prior_workdir, "igpt": args.igpt_workdir}, "rows": rows,
            "step_ratio": pixel["sequential_steps"] / prior["sequential_steps"],
            "speedup": prior["images_per_s"] / pixel["images_per_s"]}
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print(f"{spec.name}: D = {spec.num_dims}, {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{args.num} images per call, best of {args.repeats}")
  print("| model | sequential transformer steps | decoder passes | images/s | s/image | compile s |")
  print("|---|---:|---:|---:|---:|---:|")
  for r in rows:
    print(f"| {r['model']} | {r['sequential_steps']} | {r['decoder_passes']} | {r['images_per_s']:.3f} | "
          f"{r['seconds_per_image']:.4f} | {r['compile_seconds']:.1f} |")
  print(f"code prior / image-GPT: {result['speedup']:.1f}x images/s at {result['step_ratio']:.0f}x fewer steps")
  return result


if __name__ == "__main__":
  main()
