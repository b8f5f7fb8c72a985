"""How tight is the GAN's AIS likelihood? Bidirectional Monte Carlo on data simulated from the trained G.

  python -m experiments.studies.gan_bdmc --workdir=runs/gan
  python -m experiments.studies.gan_bdmc --workdir=runs/compare/gan_caption --num=8 --steps=10,30,100 --chains=2
  python -m experiments.studies.gan_bdmc --workdir=runs/gan --sigma2=0.02 --out=bdmc_0.02.json

BDMC (Grosse, Ghahramani and Adams 2015; applied to decoder-based models by
Wu, Burda, Salakhutdinov and Grosse 2017). The family's likelihood
(`genfam.families.gan`) is AIS under
  p(z) = N(0, I_L),   p(y | z, c) = N(G_ema(z, c), sigma^2 I_D),
whose forward estimate log p-hat(y | c) is a stochastic LOWER bound on
log p(y | c). On data simulated from this very model,
  z ~ N(0, I_L),   y = G_ema(z, c) + sigma eps,   eps ~ N(0, I_D),
the z that made y is an exact sample of p(z | y, c), so reverse AIS
(`genfam.likelihood.ais.reverse_ais`, beta from 1 down to 0, started at that z) gives a
stochastic UPPER bound -log (1/C) sum_c w_rev,c. In expectation
  E[forward] <= log p(y | c) <= E[reverse],
and gap = reverse - forward (>= 0 in expectation) bounds how far the forward
estimate -- the number the family reports -- can be from the truth on such
data, at that schedule length T. It shrinks to 0 as T grows.

What this script holds fixed: the conditions c are those of the first --num
TEST examples, built as the family's evaluation builds them
(`pipeline.eval_batches` + `GAN.condition_vector`: one-hot labels, or the
frozen text encoder's embedding of the evaluation captions); the simulated
(z, y) are drawn once (--seed) and shared by every T; the forward bound is
the family's own `gan.ais_log_marginal` (chains combined by log-mean-exp,
step size adapted through pilot chains), and the reverse one uses the same
observation model, chains, pilot chains, leapfrog steps and initial step size.
sigma^2: --sigma2, else the value `experiments/studies/gan_ais_sigma.py` chose
(WORKDIR/ais_sigma.json), else the run's eval.ais_sigma2.

Units. Bits/dim use the family's AIS conversion (`gan.log_likelihood_fn`):
  bpd = nats_to_bpd(-log p, D) + log2 K = (-log p + D log K) / (D log 2),
so the forward bound becomes the family's kind of number (an upper bound on
bits/dim) and the reverse one a lower bound; the gap in bits/dim is
gap_nats / (D log 2) (the discretization term cancels). Means are over the
--num examples, with the standard error over examples.

Writes WORKDIR/bdmc.json (or --out) with every setting and, per T, the mean
bounds, the gap, HMC acceptances and seconds (compilation apart), and prints a table.
"""
import argparse
import json
import math
import os
import sys
import time

import jax
import numpy as np

from genfam import sharding
from genfam.data import pipeline
from genfam.errors import GenfamError
from genfam.evaluation import evaluate
from genfam.families import gan
from genfam.likelihood import ais
from genfam.likelihood.bits import nats_to_bpd
from genfam.loop import train
from genfam.settings import config_files

SIMULATION_STREAM, AIS_STREAM = 0, 1   # fold_in indices of the --seed key


def observation_log_likelihood(model: gan.GAN, g_params, sigma2: float) -> ais.LogLikelihoodFn:
  """log p(y | z, c) = log N(y; G(z, c), sigma2 I_D) of one example (nats), as `gan.ais_log_marginal`:
  (z [L], (y [D], c [E])) -> []."""

  def log_lik(z, datum):
    y, c = datum
    mean = model.generator.apply({"params": g_params}, z[None], c[None])[0].reshape(-1)   # [D]
    return ais.gaussian_log_likelihood(mean, y, sigma2)

  return log_lik


def simulate_fn(model: gan.GAN, sigma2: float):
  """simulate(g_params, batch, rng) -> (z [B, L], y [B, D], c [B, E]): c the batch's condition
  (`GAN.condition_vector`), z ~ N(0, I_L), y = G(z, c) + sqrt(sigma2) eps, eps ~ N(0, I_D)."""

  def simulate(g_params, batch, rng):
    k_z, k_eps = jax.random.split(rng)
    c = model.condition_vector(batch)                                        # [B, E]
    b = c.shape[0]
    z = jax.random.normal(k_z, (b, model.latent_dim))                        # [B, L]
    mean = model.generator.apply({"params": g_params}, z, c).reshape(b, -1)  # [B, D]
    y = mean + math.sqrt(sigma2) * jax.random.normal(k_eps, mean.shape)      # [B, D]
    return z, y, c

  return simulate


def bounds_fn(model: gan.GAN, sigma2: float, num_steps: int, num_chains: int, adapt_chains: int,
              num_leapfrog: int, step_size: float):
  """bounds(g_params, z [B, L], y [B, D], c [B, E], rng) -> {part: [B]} for a schedule of num_steps:
  'lower' = forward AIS log p-hat(y | c) (the family's estimator; E[lower] <= log p(y | c)),
  'upper' = -reverse AIS log-estimate from the true z (E[upper] >= log p(y | c)), both in nats,
  and each direction's mean HMC acceptance."""

  def bounds(g_params, z, y, c, rng):
    k_forward, k_reverse = jax.random.split(rng)
    forward = gan.ais_log_marginal(model, g_params, y, c, k_forward, sigma2, num_steps, num_chains,
                                   adapt_chains, num_leapfrog, step_size)
    reverse = ais.reverse_ais(observation_log_likelihood(model, g_params, sigma2), (y, c), model.latent_dim,
                              k_reverse, z, num_steps=num_steps, num_chains=num_chains,
                              adapt_chains=adapt_chains, num_leapfrog=num_leapfrog, step_size=step_size)
    return {"lower": forward.log_estimate, "upper": -reverse.log_estimate,
            "forward_acceptance": forward.acceptance, "reverse_acceptance": reverse.acceptance}

  return bounds


def to_bpd(log_p, num_dims: int, num_bins: int):
  """log p(y) (nats) -> the family's AIS bits/dim (`gan.ais_bpd`), in float64."""
  return gan.ais_bpd(np.asarray(log_p, np.float64), num_dims, num_bins)


def choose_sigma2(flag: float, workdir: str, config) -> tuple[float, str]:
  """--sigma2, else the chosen value in WORKDIR/ais_sigma.json, else config.eval.ais_sigma2."""
  if flag > 0:
    return flag, "--sigma2"
  path = os.path.join(workdir, "ais_sigma.json")
  if os.path.exists(path):
    with open(path) as f:
      chosen = json.load(f).get("chosen_sigma2")
    if chosen:
      return float(chosen), f"{path} (chosen by experiments/studies/gan_ais_sigma.py)"
  return float(config.eval.ais_sigma2), "config eval.ais_sigma2"


def summarize(num_steps: int, lower, upper, fwd_acc, rev_acc, num_dims: int, num_bins: int,
              compile_seconds: float, seconds: float) -> dict:
  """One T's row: mean ± stderr over examples of both bounds (nats, bits/dim) and of the gap."""
  gap = np.asarray(upper, np.float64) - np.asarray(lower, np.float64)   # [N] nats
  row = {"steps": num_steps}
  for name, value in (("forward_nats", lower), ("reverse_nats", upper), ("gap_nats", gap),
                      ("forward_bpd", to_bpd(lower, num_dims, num_bins)),
                      ("reverse_bpd", to_bpd(upper, num_dims, num_bins)),
                      ("gap_bpd", nats_to_bpd(gap, num_dims))):
    row[name], row[f"{name}_stderr"] = evaluate.mean_and_stderr(value)
  row.update(forward_acceptance=float(np.mean(fwd_acc)), reverse_acceptance=float(np.mean(rev_acc)),
             compile_seconds=compile_seconds, seconds=seconds,
             per_example={"forward_nats": [float(v) for v in lower], "reverse_nats": [float(v) for v in upper]})
  return row


def parse_steps(text: str) -> list[int]:
  try:
    steps = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    steps = []
  if not steps or min(steps) < 1:
    raise GenfamError(f"--steps={text!r} must be comma-separated schedule lengths >= 1, e.g. --steps=10,30,100")
  return steps


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a trained GAN run")
  parser.add_argument("--config", default="gan", help="used when WORKDIR has no config.json (FILE[:variant])")
  parser.add_argument("--num", type=int, default=8, help="simulated examples (conditions of the first NUM test examples)")
  parser.add_argument("--steps", default="10,30,100", help="comma-separated AIS schedule lengths T")
  parser.add_argument("--chains", type=int, default=0, help="chains per example and direction (default eval.ais_chains)")
  parser.add_argument("--adapt_chains", type=int, default=-1, help="pilot chains (default eval.ais_adapt_chains)")
  parser.add_argument("--leapfrog", type=int, default=0, help="leapfrog steps per HMC move (default eval.ais_leapfrog)")
  parser.add_argument("--step_size", type=float, default=0.0, help="initial HMC step size (default eval.ais_step_size)")
  parser.add_argument("--sigma2", type=float, default=0.0,
                      help="observation variance (default: WORKDIR/ais_sigma.json's choice, else eval.ais_sigma2)")
  parser.add_argument("--batch_size", type=int, default=0, help="examples per batch (default min(eval.batch_size, NUM))")
  parser.add_argument("--seed", type=int, default=0, help="draws the simulated data and the AIS randomness")
  parser.add_argument("--out", default="", help="JSON path (default WORKDIR/bdmc.json)")
  args = parser.parse_args(argv)

  steps = parse_steps(args.steps)
  if jax.process_count() > 1:
    raise GenfamError("experiments/studies/gan_bdmc.py runs as one process (any number of local devices); start it once")
  if args.num < 2:
    raise GenfamError(f"--num={args.num}: BDMC needs at least 2 examples for a standard error")
  checkpoints = os.path.join(os.path.abspath(args.workdir), "checkpoints")
  if not os.path.isdir(checkpoints) or not os.listdir(checkpoints):   # before loading any data
    raise GenfamError(f"no checkpoint in {checkpoints}: train first with "
                      f"`python -m genfam.main --config=configs/gan.py --workdir={args.workdir}`")
  config = config_files.saved(args.workdir, args.config)
  if config.family != "gan":
    raise GenfamError(f"{args.workdir} holds a {config.family!r} run; BDMC here needs a GAN run (configs/gan.py)")
  e = config.eval
  chains = args.chains or e.ais_chains
  adapt_chains = e.ais_adapt_chains if args.adapt_chains < 0 else args.adapt_chains
  leapfrog, step_size = args.leapfrog or e.ais_leapfrog, args.step_size or e.ais_step_size
  sigma2, sigma2_source = choose_sigma2(args.sigma2, args.workdir, config)

  run = train.Run(config, args.workdir)
  state, _, meta = run.restore_or_fail()
  params = run.family.eval_params(state)                                  # G's EMA, as the family evaluates
  model = gan.build(config, run.spec, **run.family_inputs)
  source = run.sources["test"]
  num = min(args.num, len(source))
  batch_size = min(args.batch_size or e.batch_size, num)
  num_dims, num_bins = run.spec.num_dims, run.spec.num_bins
  print(f"step {int(meta['step'])} of {args.workdir}: BDMC on {num} examples simulated from G_ema with the "
        f"{model.condition}s of the first {num} test examples, sigma^2 = {sigma2:g} ({sigma2_source}), "
        f"T in {steps}, {chains} chains (+{adapt_chains} pilot), {leapfrog} leapfrog", flush=True)

  # The simulated data, drawn once and shared by every T.
  simulate = jax.jit(simulate_fn(model, sigma2))
  key = jax.random.PRNGKey(args.seed)
  data = []   # per batch: (z, y, c, mask)
  for i, (batch, mask) in enumerate(pipeline.eval_batches(source, batch_size, num)):
    z, y, c = simulate(params, sharding.shard_batch(batch, run.mesh),
                       jax.random.fold_in(jax.random.fold_in(key, SIMULATION_STREAM), i))
    data.append((z, y, c, mask))

  print(f"  {'T':>5}  {'forward':>10}  {'reverse':>10}  {'gap (nats)':>17}  {'gap (bits/dim)':>17}  "
        f"{'bits/dim bracket':>17}  {'accept f/r':>10}  {'s':>6}", flush=True)
  rows = []
  for num_steps in steps:
    fn = jax.jit(bounds_fn(model, sigma2, num_steps, chains, adapt_chains, leapfrog, step_size))
    start = time.time()
    compiled = fn.lower(params, *data[0][:3], key).compile()
    compile_seconds = time.time() - start
    start = time.time()
    parts = {}
    for i, (z, y, c, mask) in enumerate(data):
      out = compiled(params, z, y, c, jax.random.fold_in(jax.random.fold_in(key, AIS_STREAM), i))
      for name, value in out.items():
        parts.setdefault(name, []).append(np.asarray(value)[mask])
    seconds = time.time() - start
    parts = {name: np.concatenate(v) for name, v in parts.items()}
    rows.append(summarize(num_steps, parts["lower"], parts["upper"], parts["forward_acceptance"],
                          parts["reverse_acceptance"], num_dims, num_bins, compile_seconds, seconds))
    r = rows[-1]
    print(f"  {num_steps:>5}  {r['forward_nats']:10.2f}  {r['reverse_nats']:10.2f}  "
          f"{r['gap_nats']:8.2f} ± {r['gap_nats_stderr']:6.2f}  {r['gap_bpd']:8.4f} ± {r['gap_bpd_stderr']:6.4f}  "
          f"[{r['reverse_bpd']:7.4f}, {r['forward_bpd']:7.4f}]  {r['forward_acceptance']:4.2f}/"
          f"{r['reverse_acceptance']:4.2f}  {seconds:6.2f}", flush=True)

  result = {
      "workdir": args.workdir, "step": int(meta["step"]), "family": "gan", "condition": model.condition,
      "examples": f"z ~ N(0, I), y = G_ema(z, c) + sqrt(sigma2) eps with c the {model.condition}s of the first "
                  f"{num} test examples (seed {args.seed})",
      "num": num, "seed": args.seed, "sigma2": sigma2, "sigma2_source": sigma2_source, "steps": steps,
      "chains": chains, "adapt_chains": adapt_chains, "leapfrog": leapfrog, "step_size": step_size,
      "batch_size": batch_size, "num_dims": num_dims, "num_bins": num_bins,
      "bpd": "nats_to_bpd(-log p, D) + log2 K, as the family's AIS bits/dim; gap_bpd = gap_nats / (D log 2)",
      "device": f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}) x {jax.device_count()}",
      "rows": rows,
  }
  out = args.out or os.path.join(args.workdir, "bdmc.json")
  with open(out, "w") as f:
    json.dump(result, f, indent=2)
  print(f"  forward, reverse: mean log p(y | c) bounds (nats; forward = the family's AIS estimate, below in "
        f"expectation; reverse from the true z, above); gap = reverse - forward, mean ± s.e. over {num} examples; "
        f"bracket = [reverse, forward] in the family's bits/dim; s excludes compilation\n{out}")
  return result


if __name__ == "__main__":
  try:
    main()
  except GenfamError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
