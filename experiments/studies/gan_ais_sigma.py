"""Choose the GAN's AIS observation variance sigma^2 on validation images from the TRAIN split.

  python -m experiments.studies.gan_ais_sigma --workdir=runs/gan
  python -m experiments.studies.gan_ais_sigma --workdir=runs/gan --grid=0.005,0.01,0.02 --num=16 --steps=30

The likelihood of `genfam.families.gan` is AIS under p(y | z, c) =
N(G_ema(z, c), sigma^2 I). sigma^2 is a modelling choice, so it is chosen on
validation data and never on test (Wu et al. 2017): this script takes the first
`--num` images of the run's validation split — the examples that
data.validation_examples held out of the train split, which the run never
trained on (configs/gan.py holds out 1000) — runs the same AIS estimate
(`gan.log_likelihood_fn`, conditioned as the model is) for every sigma^2 of
the grid (default eval.ais_sigma2_grid) with --steps intermediate distributions
(default eval.ais_steps) and --chains chains, and picks the sigma^2 with the
lowest mean validation bits/dim. It prints a table and the evaluation command,
and writes WORKDIR/ais_sigma.json. The test evaluation then runs with
--config.eval.ais_sigma2=<chosen>, and its report carries 'sigma2'.
"""
import argparse
import json
import os

import jax
import numpy as np

from genfam import sharding
from genfam.data import pipeline
from genfam.evaluation import evaluate
from genfam.families import gan
from genfam.loop import train
from genfam.settings import config_files


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--config", default="gan", help="used when WORKDIR has no config.json")
  parser.add_argument("--grid", default="", help="comma-separated sigma^2 values (default eval.ais_sigma2_grid)")
  parser.add_argument("--num", type=int, default=0, help="validation images (default eval.ais_validation_examples)")
  parser.add_argument("--steps", type=int, default=0, help="AIS steps (default eval.ais_steps)")
  parser.add_argument("--chains", type=int, default=0, help="AIS chains (default eval.ais_chains)")
  parser.add_argument("--batch_size", type=int, default=0, help="images per AIS batch (default eval.batch_size)")
  args = parser.parse_args()

  config = config_files.saved(args.workdir, args.config)
  e = config.eval
  grid = [float(v) for v in args.grid.split(",")] if args.grid else list(e.ais_sigma2_grid)
  num = args.num or e.ais_validation_examples
  steps, chains = args.steps or e.ais_steps, args.chains or e.ais_chains
  batch_size = min(args.batch_size or e.batch_size, num)

  run = train.Run(config, args.workdir)
  state, _, meta = run.restore_or_fail()
  params = run.family.eval_params(state)
  model = gan.build(config, run.spec, **run.family_inputs)
  if "validation" not in run.sources:
    raise SystemExit(f"error: the run in {args.workdir} holds out no validation split: train it with "
                     f"--config.data.validation_examples=N (N > 0), never choose sigma^2 on test")
  source = run.sources["validation"]
  num = min(num, len(source))
  print(f"step {int(meta['step'])} of {args.workdir}: sigma^2 on {num} held-out validation images, AIS {steps} steps x "
        f"{chains} chains", flush=True)
  rows = []
  for sigma2 in grid:
    fn = jax.jit(gan.log_likelihood_fn(model, run.spec.num_dims, run.spec.num_bins, sigma2, steps, chains,
                                       e.ais_adapt_chains, e.ais_leapfrog, e.ais_step_size))
    values = []
    for i, (batch, mask) in enumerate(pipeline.eval_batches(source, batch_size, num)):
      out = fn(params, sharding.shard_batch(batch, run.mesh), jax.random.fold_in(jax.random.PRNGKey(1), i))
      values.append(np.asarray(out["bpd"])[mask])
    bpd, bpd_stderr = evaluate.mean_and_stderr(np.concatenate(values))
    rows.append({"sigma2": sigma2, "bpd": bpd, "bpd_stderr": bpd_stderr})
    print(f"  sigma^2 {sigma2:<8g} validation {rows[-1]['bpd']:.4f} ± {rows[-1]['bpd_stderr']:.4f} bits/dim", flush=True)
  best = min(rows, key=lambda r: r["bpd"])
  result = {"step": int(meta["step"]), "validation": f"first {num} of the {len(source)} validation images held "
            f"out of the train split", "ais_steps": steps,
            "ais_chains": chains, "rows": rows, "chosen_sigma2": best["sigma2"]}
  with open(os.path.join(args.workdir, "ais_sigma.json"), "w") as f:
    json.dump(result, f, indent=2)
  print(f"chosen sigma^2 = {best['sigma2']:g}; evaluate with\n  python -m genfam.main --config=configs/gan.py "
        f"--workdir={args.workdir} --mode=eval --config.eval.ais_sigma2={best['sigma2']:g}")


if __name__ == "__main__":
  main()
