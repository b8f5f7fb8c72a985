"""Evaluation: test-split bits/dim with standard errors, labelled by kind.

Every number follows DESIGN.md's likelihood conventions: D is the stored pixel
count of the dataset, K its number of grey levels (256, or 17 for digits), and
every family's `log_likelihood` already returns per-example bits/dim through
`genfam.bits`. Here the per-example values are averaged over `num_draws`
independent draws of the family's noise (dequantization, posterior samples,
timesteps) and then over the test examples; the standard error is that of the
test mean over examples.
"""
import math
import time

import jax
import numpy as np

from genfam import sharding
from genfam.data import pipeline


def likelihood_report(fn, params, source, rng, mesh, *, kind: str, num_bins: int, batch_size: int,
                      num_examples: int = 0, num_draws: int = 1) -> dict:
  """Mean per-example bits/dim of `fn` over the test split, with its parts.

  fn(params, batch, rng) -> {name: [B] bits/dim} with 'bpd' the total.
  Returns {'kind', 'bpd', 'bpd_stderr', <part>: mean, 'num_examples',
  'num_draws', 'num_bins', 'seconds'}.
  """
  start = time.time()
  jitted = jax.jit(fn)
  sums, count, per_example_total = {}, 0, []
  for i, (batch, mask) in enumerate(pipeline.eval_batches(source, batch_size, num_examples)):
    batch = sharding.shard_batch(batch, mesh)
    draws = []
    for d in range(num_draws):
      parts = jitted(params, batch, jax.random.fold_in(jax.random.fold_in(rng, i), d))
      draws.append({k: sharding.to_host(v) for k, v in parts.items()})
    mean = {k: np.mean([dr[k] for dr in draws], axis=0)[mask] for k in draws[0]}
    for k, v in mean.items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(v, dtype=np.float64))
    per_example_total.append(mean["bpd"])
    count += int(mask.sum())
  totals = np.concatenate(per_example_total).astype(np.float64)
  report = {"kind": kind, "bpd": float(totals.mean()),
            "bpd_stderr": float(totals.std(ddof=1) / math.sqrt(len(totals))) if len(totals) > 1 else float("nan")}
  report.update({k: v / count for k, v in sums.items() if k != "bpd"})
  report.update(num_examples=count, num_draws=num_draws, num_bins=num_bins, seconds=time.time() - start)
  return report


def evaluate_family(family, params, source, rng, mesh, *, num_bins: int, batch_size: int,
                    num_examples: int = 0, num_draws: int = 1, extras: bool = True,
                    extra_num_examples: int = 0) -> dict:
  """{kind: report} for the family's main likelihood and (if extras) its extra ones.

  The extra bounds (e.g. a VAE's IWAE-1000, 1000 decoder passes per image) run
  on the first `extra_num_examples` test examples (0: as many as the main one);
  each report states its own example count.
  """
  reports = {family.likelihood_kind: likelihood_report(
      family.log_likelihood, params, source, rng, mesh, kind=family.likelihood_kind, num_bins=num_bins,
      batch_size=batch_size, num_examples=num_examples, num_draws=num_draws)}
  if extras and family.extra_likelihoods:
    for j, (kind, fn) in enumerate(family.extra_likelihoods.items()):
      reports[kind] = likelihood_report(fn, params, source, jax.random.fold_in(rng, j + 1), mesh, kind=kind,
                                        num_bins=num_bins, batch_size=batch_size,
                                        num_examples=extra_num_examples or num_examples, num_draws=num_draws)
  return reports


def describe(reports: dict) -> str:
  """One line per report: '<kind>: 3.412 ± 0.004 bits/dim (10000 test examples, 256 bins, 2 draws)'."""
  lines = []
  for kind, r in reports.items():
    parts = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k.endswith("_bpd"))
    bins = f"{r['num_bins']} bins per pixel" + ("" if r["num_bins"] == 256 else f": bits/dim uses log2({r['num_bins']})")
    lines.append(f"test {kind}: {r['bpd']:.4f} ± {r['bpd_stderr']:.4f} bits/dim "
                 f"({r['num_examples']} examples, {r['num_draws']} draws, {bins})" + (f" [{parts}]" if parts else ""))
  return "\n".join(lines)
