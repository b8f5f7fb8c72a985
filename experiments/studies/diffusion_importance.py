"""The importance-sampled DDPM bound against the full bound on a trained run: standard errors and costs.

  python -m experiments.studies.diffusion_importance terms  --workdir=/tmp/iddpm_h6 --num_examples=100 --out=DIR
  python -m experiments.studies.diffusion_importance design --workdir=/tmp/iddpm_h6 --out=DIR
  python -m experiments.studies.diffusion_importance run    --workdir=/tmp/iddpm_h6 --num_examples=1000 --out=DIR \\
      --set=eval.is_timesteps=20

'terms': the full bound (all T terms, `bound.exact_vlb`, the 'vlb' evaluation's keys) on the first
  N test images, every term of every image kept (DIR/full_terms.npz), with its cost.
'design': for proposals from pilots of several sizes on training images (`families.diffusion`'s,
  with the evaluated EMA parameters), the uniform proposal and the best proposal for these very test
  images (not usable: it would see them), the exact per-image variance of the estimate for k
  timesteps (`importance.estimator_variance` on each image's kept terms, which are one noise
  draw per term, so the terms' own noise is in it) and the predicted standard error on M images:
  sqrt((Var_x B + E_x Var(B-hat | x)) / M), against the full bound's std_x(B) / sqrt(N).
'run': the 'vlb-is-<k>t' evaluation as --mode=eval runs it (pilot once, then the test
  batches) on the first M test images, and on the first N (the full bound's images), with costs.
'vdm': a VDM run's 'vlb-continuous-<k>t' on the first N test images, twice with independent t and
  eps (the t sampling's variance from the difference), its SE on M images, and a table of the
  integrand at --vdm_strata stratified t per image: the variance with fewer stratified t, and of
  iid IS over t against iid uniform t.
  python -m experiments.studies.diffusion_importance vdm --workdir=/tmp/vdm_h6 --num_examples=100 --out=DIR
JSON lines to DIR/results.jsonl; a summary to stdout.
"""
import argparse
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from genfam.diffusion import bound, importance
from genfam.evaluation import evaluate
from genfam.families import diffusion as family_module
from genfam.likelihood.bits import nats_to_bpd
from genfam.loop import frozen, train
from genfam.settings import config_files


def _run(workdir, overrides):
  config = config_files.saved(workdir)
  config_files.apply_overrides(config, overrides)
  config.train.progress = False
  run = train.Run(config, workdir)
  state, _, meta = run.restore_or_fail()
  return config, run, run.family.eval_params(state)


def _eps_and_label(config, spec, params):
  """The bound's eps_fn(x, t, labels) and label term (nats), as the family builds them."""
  d = config.diffusion
  learned = d.variance == "learned"
  conditioning = family_module.make_conditioning(config.model, spec)
  net = family_module.make_net(config.model, spec, learned, conditioning.dim)
  eps_c = family_module._eps_fn(net, params, learned)
  with_label = conditioning.kind == "label" and d.bound_condition == "label"
  return eps_c, (math.log(spec.num_classes) if with_label else 0.0), with_label


def _write(out, record):
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "results.jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")
  print(json.dumps(record), flush=True)


def terms(args, overrides):
  config, run, params = _run(args.workdir, overrides)
  spec, d = run.spec, config.diffusion
  sched, log_var = family_module._process(d)
  eps_c, label_nats, with_label = _eps_and_label(config, spec, params)

  def full(images, labels, key):
    eps_fn = (lambda x, t: eps_c(x, t, labels)) if with_label else (lambda x, t: eps_c(x, t, None))
    return bound.exact_vlb(eps_fn, sched, log_var, images, key, spec.num_bins, chunk=d.vlb_chunk,
                           clip_x0=bool(d.clip_denoised))

  full = jax.jit(full)
  key = jax.random.fold_in(run.eval_key, 12345)
  prior, all_terms, seconds, first = [], [], 0.0, None
  from genfam.data import pipeline
  for i, (batch, mask) in enumerate(pipeline.eval_batches(run.sources["test"], config.eval.batch_size,
                                                          args.num_examples)):
    start = time.time()
    out = jax.device_get(full(batch["image"], batch["label"], jax.random.fold_in(key, i)))
    elapsed = time.time() - start
    first = elapsed if first is None else first
    seconds += elapsed if i else 0.0
    prior.append(out["prior"][mask])
    all_terms.append(out["terms"][:, mask])
    print(f"batch {i}: {elapsed:.1f} s", flush=True)
  prior, all_terms = np.concatenate(prior), np.concatenate(all_terms, axis=1)
  n = prior.shape[0]
  np.savez(os.path.join(args.out, "full_terms.npz"), prior=prior, terms=all_terms, label_nats=label_nats,
           num_dims=spec.num_dims)
  bpd = nats_to_bpd(prior + all_terms.sum(0) + label_nats, spec.num_dims)
  mean, se = evaluate.mean_and_stderr(bpd)
  after_first = n - min(n, config.eval.batch_size)
  _write(args.out, {"what": "full bound", "kind": "vlb", "num_examples": n, "bpd": mean, "bpd_stderr": se,
                    "network_passes": n * sched.num_steps, "seconds_first_batch_with_compile": first,
                    "seconds_per_image": seconds / after_first if after_first else first / n,
                    "decoder_bpd": float(nats_to_bpd(all_terms[0], spec.num_dims).mean()),
                    "diffusion_bpd": float(nats_to_bpd(all_terms[1:].sum(0), spec.num_dims).mean())})


def design(args, overrides):
  saved = np.load(os.path.join(args.out, "full_terms.npz"))
  prior, all_terms, label_nats, num_dims = saved["prior"], saved["terms"], float(saved["label_nats"]), int(
      saved["num_dims"])
  to_bpd = lambda nats: nats / (num_dims * math.log(2))
  full = to_bpd(prior + all_terms.sum(0) + label_nats)
  n, num_steps = full.shape[0], all_terms.shape[0]
  between = full.var(ddof=1)
  se_full = math.sqrt(between / n)
  target = args.target_examples

  def report(name, q, extra):
    for k in args.ks:
      for stratified in (True, False):
        within = np.array([importance.estimator_variance(to_bpd(all_terms[:, i]), q, k, stratified)
                           for i in range(n)])
        se = math.sqrt((between + within.mean()) / target)
        _write(args.out, {"what": "design", "proposal": name, **extra, "k": k, "stratified": stratified,
                          "within_var_bpd2": float(within.mean()), "between_var_bpd2": float(between),
                          f"predicted_se_{target}": se, f"full_se_{n}": se_full, "ok": se <= se_full,
                          "passes_per_image": k + 1})

  with jax.enable_x64(True):
    report("uniform", np.asarray(importance.uniform_proposal(num_steps, jnp.float64)), {})
    oracle = np.sqrt(np.mean(all_terms[1:] ** 2, axis=1))
    for u in args.shares:
      q = np.concatenate([[0.0], (1 - u) * oracle / oracle.sum() + u / (num_steps - 1)])
      report("oracle (these test images)", q, {"uniform_share": u})
  config, run, params = _run(args.workdir, overrides)
  for pilot_examples in args.pilot_examples:
    for pilot_timesteps in args.pilot_timesteps:
      for u in args.shares:
        c = config_files.saved(args.workdir)
        config_files.apply_overrides(c, overrides)
        c.eval.is_timesteps, c.eval.is_pilot_examples = 1, pilot_examples
        c.eval.is_pilot_timesteps, c.eval.is_uniform_share = pilot_timesteps, u
        family = frozen.make_family(c, run.spec)   # as the loop builds it (the pilot images included)
        start = time.time()
        q = family.extra_likelihoods["vlb-is-1t"].prepare(params).proposal
        seconds = time.time() - start
        grid = importance.pilot_grid(num_steps, pilot_timesteps)
        with jax.enable_x64(True):
          report("pilot", np.asarray(q, np.float64),
                 {"pilot_examples": pilot_examples, "pilot_timesteps": len(grid), "uniform_share": u,
                  "pilot_passes": pilot_examples * len(grid), "pilot_seconds_with_compile": seconds})


def run_estimate(args, overrides):
  config, run, params = _run(args.workdir, overrides)
  k = config.eval.is_timesteps
  if k < 1:
    raise SystemExit("error: --set=eval.is_timesteps=K (>= 1)")
  fn = run.family.extra_likelihoods[f"vlb-is-{k}t"] if not config.eval.is_main else run.family.log_likelihood
  key = jax.random.fold_in(run.eval_key, train.FINAL_EVAL)
  for num in args.num_examples_list:
    # compile first (one batch), so 'seconds' is the evaluation's
    evaluate.likelihood_report(fn, params, run.sources["test"], key, run.mesh, kind=f"vlb-is-{k}t",
                               num_bins=run.spec.num_bins, batch_size=config.eval.batch_size,
                               num_examples=config.eval.batch_size)
    start = time.time()
    prepared = fn.prepare(params)
    pilot_seconds = time.time() - start
    report = evaluate.likelihood_report(fn, params, run.sources["test"], key, run.mesh, kind=f"vlb-is-{k}t",
                                        num_bins=run.spec.num_bins, batch_size=config.eval.batch_size,
                                        num_examples=num)
    grid = importance.pilot_grid(config.diffusion.num_steps, config.eval.is_pilot_timesteps)
    paired = {}
    full_path = os.path.join(args.out, "full_terms.npz")
    if os.path.exists(full_path) and np.load(full_path)["prior"].shape[0] == report["num_examples"]:
      saved = np.load(full_path)   # the full bound on the same images: per-image differences
      full = nats_to_bpd(saved["prior"] + saved["terms"].sum(0) + float(saved["label_nats"]), int(saved["num_dims"]))
      from genfam.data import pipeline
      est = np.concatenate([draws[0]["bpd"][mask] for mask, draws in evaluate.batch_results(
          prepared, params, pipeline.eval_batches(run.sources["test"], config.eval.batch_size, num), key,
          run.mesh, num_draws=1)])
      diff_mean, diff_se = evaluate.mean_and_stderr(est - np.asarray(full, np.float64))
      paired = {"same_images_full_bpd": float(np.mean(full)), "paired_difference": diff_mean,
                "paired_difference_stderr": diff_se}
    _write(args.out, {"what": "estimate", **report, **paired, "pilot_seconds": pilot_seconds,
                      "pilot_passes": config.eval.is_pilot_examples * len(grid),
                      "network_passes": report["num_examples"] * (k + 1),
                      "timestep_share_of_se2": report["timestep_variance"] / (report["bpd_stderr"] ** 2 *
                                                                              report["num_examples"]),
                      "proposal_max_weight_ratio": float(1.0 / (prepared.proposal[1:].min()
                                                                * (config.diffusion.num_steps - 1)))})


def vdm(args, overrides):
  """VDM's continuous-time estimate: its SE on M images at eval_t stratified t, split into the
  images' spread and the t sampling's (two independent evaluations of the same images), and a
  table of the integrand at --vdm_strata stratified t per image for fewer t and for IS over t."""
  from genfam.diffusion import continuous
  from genfam.families import vdm as vdm_module
  config, run, params = _run(args.workdir, overrides)
  spec, d = run.spec, config.diffusion
  n, target = args.num_examples, args.target_examples
  key = jax.random.fold_in(run.eval_key, 777)
  from genfam.data import pipeline
  batches = list(pipeline.eval_batches(run.sources["test"], config.eval.batch_size, n))
  gamma_fn = vdm_module._gamma_fn(d.schedule, d, params)
  net = family_module.make_net(config.model, spec)
  eps_fn = lambda z, t: net.apply({"params": params["net"]}, z, vdm_module.TIME_SCALE * t, None, False)
  to_bpd = lambda nats: np.asarray(nats_to_bpd(nats, spec.num_dims), np.float64)

  @jax.jit
  def estimate(images, rng):   # the family's log_likelihood: k = eval_t stratified t
    parts = continuous.vlb(eps_fn, gamma_fn, images, rng, spec.num_bins, num_t=int(d.eval_t))
    return parts["prior"] + parts["recon"] + parts["diffusion"]

  @jax.jit
  def table(images, rng):      # [strata, B]: 1/2 gamma'(t_j) ||eps_j - eps_hat||^2, t_j in stratum j
    x0 = continuous.bin_centres(images, spec.num_bins)
    ts = continuous.stratified_times(rng, x0.shape[0], args.vdm_strata)
    def one(k_t):
      k, t = k_t
      eps = jax.random.normal(jax.random.fold_in(rng, k + 1), x0.shape)
      gamma, slope = continuous.gamma_and_slope(gamma_fn, t)
      return continuous.diffusion_loss(eps, eps_fn(continuous.q_sample(x0, gamma, eps), t), slope)
    return jax.lax.map(one, (jnp.arange(ts.shape[0]), ts)), ts

  draws, seconds = [], []
  for rep in range(2):
    values = []
    for i, (batch, mask) in enumerate(batches):
      start = time.time()
      values.append(to_bpd(jax.device_get(estimate(batch["image"], jax.random.fold_in(jax.random.fold_in(
          key, rep), i))))[mask])
      seconds.append(time.time() - start)
    draws.append(np.concatenate(values))
  a, b = draws
  within = float(np.mean((a - b) ** 2) / 2)                  # E_x Var(estimate | x), unbiased
  total = float(np.var(a, ddof=1))
  between = total - within
  mean, se = evaluate.mean_and_stderr(a)
  _write(args.out, {"what": "vdm", "kind": f"vlb-continuous-{d.eval_t}t", "num_examples": len(a), "bpd": mean,
                    "bpd_stderr": se, "within_var_bpd2": within, "between_var_bpd2": between,
                    f"se_{target}": math.sqrt(total / target),
                    f"se_{target}_infinite_t": math.sqrt(max(between, 0.0) / target),
                    "seconds_per_image": float(np.sum(seconds[1:]) / max(1, 2 * len(a) - len(batches[0][1]))),
                    "network_passes_per_image": int(d.eval_t)})
  tables = []
  for i, (batch, mask) in enumerate(batches):
    values, _ = table(batch["image"], jax.random.fold_in(jax.random.fold_in(key, 99), i))
    tables.append(to_bpd(jax.device_get(values))[:, mask])
  tab = np.concatenate(tables, axis=1)                        # [S, N] bits/dim, draw j in stratum j
  np.save(os.path.join(args.out, "vdm_table.npy"), tab)
  strata = tab.shape[0]
  for k in [kk for kk in (1, 2, 4, 8, 16, 32, 64, strata) if strata % kk == 0]:
    m = strata // k                                          # one of the m sub-draws of each of k strata
    groups = tab.reshape(k, m, -1)
    var_k = np.sum(groups.var(axis=1), axis=0) / k ** 2      # [N]: a uniform pick within each stratum
    _write(args.out, {"what": "vdm fewer t (stratified)", "k": k,
                      "within_var_bpd2": float(var_k.mean()) if m > 1 else None,
                      f"se_{target}": math.sqrt((between + var_k.mean()) / target) if m > 1 else None})
  # IS over t with a piecewise-constant proposal on the strata (as bins), iid draws, against uniform iid
  m2 = np.mean(tab ** 2, axis=1)                              # [S] the images' E[L(t)^2] per bin
  q = np.sqrt(m2) / np.sum(np.sqrt(m2))
  mu = tab.mean(axis=0)                                       # [N] each image's integral
  uniform_var = np.mean(tab ** 2, axis=0) - mu ** 2           # per-draw variance, uniform t
  is_var = np.sum(tab ** 2 / (strata ** 2 * q[:, None]), axis=0) - mu ** 2
  _write(args.out, {"what": "vdm IS over t (iid draws, per draw)", "uniform_var_bpd2": float(uniform_var.mean()),
                    "is_var_bpd2": float(is_var.mean()), "ratio": float(is_var.mean() / uniform_var.mean()),
                    "q_max_over_min": float(q.max() / q.min())})


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("mode", choices=("terms", "design", "run", "vdm"))
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--num_examples", type=int, default=100, help="terms: the full bound's first test images")
  parser.add_argument("--num_examples_list", type=int, nargs="+", default=[100, 1000],
                      help="run: first test images of each estimate")
  parser.add_argument("--target_examples", type=int, default=1000, help="design: images of the estimate")
  parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 50])
  parser.add_argument("--shares", type=float, nargs="+", default=[0.1])
  parser.add_argument("--pilot_examples", type=int, nargs="+", default=[16])
  parser.add_argument("--pilot_timesteps", type=int, nargs="+", default=[64])
  parser.add_argument("--vdm_strata", type=int, default=128, help="vdm: stratified t per image in the table")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  from experiments.benchmarks.benchmark_speed import parse_overrides
  overrides = parse_overrides(args.set)
  {"terms": terms, "design": design, "run": run_estimate, "vdm": vdm}[args.mode](args, overrides)


if __name__ == "__main__":
  main()
