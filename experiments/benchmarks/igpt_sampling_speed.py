"""Sampling speed of the image-GPT: images/s with and without the key-value cache, same model.

  python -m experiments.benchmarks.igpt_sampling_speed                          # default config, fresh model
  python -m experiments.benchmarks.igpt_sampling_speed --workdir=runs/igpt      # a trained run's EMA parameters
  python -m experiments.benchmarks.igpt_sampling_speed --config=igpt:smoke --num=16 --uncached_num=16

Both samplers are one jitted loop over the D positions (genfam.nets.transformer
.sample_tokens): 'cached' prefills the prefix and runs one lax.scan step per
pixel against the per-layer key-value cache; 'uncached' runs the full forward
pass over all D positions at every step (D times the work of a forward pass).
Each is compiled first (compile time reported apart), then run --repeats times;
the fastest run gives images/s. The uncached sampler is slow (a 784-pixel image
costs 784 full forward passes), hence its own, smaller --uncached_num; both use
the same key, so the first min(num, uncached_num) images must be equal, and
that is checked. Without --workdir the model is freshly initialised with a
random head (timings only). Writes --out (JSON) and prints a markdown table.
"""
import argparse
import json

import jax
import numpy as np

from experiments.benchmarks import timing
from genfam.data import sources
from genfam.families import igpt
from genfam.settings import config_files


def load(args):
  """-> (config, spec, params)."""
  if args.workdir:
    from genfam.loop import train
    config = config_files.saved(args.workdir, args.config)
    run = train.Run(config, args.workdir)
    state, _, meta = run.restore_or_fail()
    print(f"loaded step {int(meta['step'])} of {args.workdir}", flush=True)
    return config, run.spec, run.family.eval_params(state)
  path, _, variant = args.config.partition(":")
  config = config_files.load(path, variant)
  spec = sources.dataset_spec(config.data.name)
  family = igpt.make(config, spec)
  batch = {"image": np.zeros((1,) + tuple(spec.image_shape), np.uint8), "label": np.zeros((1,), np.int32)}
  params = family.eval_params(family.init(jax.random.PRNGKey(config.seed), batch))
  head = params["head"]["kernel"]
  params["head"]["kernel"] = 0.02 * jax.random.normal(jax.random.PRNGKey(1), head.shape)
  return config, spec, params


def time_sampler(config, spec, params, sampler: str, num: int, repeats: int):
  """-> (row, uint8 samples [num, H, W, C]) for one sampler."""
  config = config.copy_and_resolve_references()
  config.sample.sampler = sampler
  family = igpt.make(config, spec)
  rng = jax.random.PRNGKey(0)
  samples, best, compile_seconds = timing.best_of(lambda i: family.sample(params, rng, num), repeats)
  return {"sampler": sampler, "num": num, "seconds": best, "images_per_s": num / best,
          "seconds_per_image": best / num, "compile_seconds": compile_seconds}, np.asarray(samples)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="igpt")
  parser.add_argument("--workdir", default="")
  parser.add_argument("--num", type=int, default=16, help="images for the cached sampler")
  parser.add_argument("--uncached_num", type=int, default=2, help="images for the uncached sampler")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--out", default="igpt_sampling_speed.json")
  args = parser.parse_args()
  config, spec, params = load(args)
  cached, a = time_sampler(config, spec, params, "cached", args.num, args.repeats)
  uncached, b = time_sampler(config, spec, params, "uncached", args.uncached_num, args.repeats)
  same = min(len(a), len(b))
  equal = bool(np.array_equal(a[:same], b[:same]))
  ratio = cached["images_per_s"] / uncached["images_per_s"]
  m = config.model
  result = {"devices": [str(d) for d in jax.devices()], "dataset": spec.name, "num_dims": spec.num_dims,
            "model": {k: m[k] for k in ("width", "depth", "num_heads", "mlp_ratio", "dtype")},
            "rows": [cached, uncached], "speedup": ratio, "first_samples_equal": equal}
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print(f"{spec.name}: D = {spec.num_dims}, width {m.width}, depth {m.depth}, heads {m.num_heads}, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
  print("| sampler | images | seconds | images/s | s/image | compile s |")
  print("|---|---:|---:|---:|---:|---:|")
  for r in (cached, uncached):
    print(f"| {r['sampler']} | {r['num']} | {r['seconds']:.2f} | {r['images_per_s']:.3f} | "
          f"{r['seconds_per_image']:.2f} | {r['compile_seconds']:.1f} |")
  print(f"cached / uncached: {ratio:.1f}x; the first {same} images equal: {equal}")


if __name__ == "__main__":
  main()
