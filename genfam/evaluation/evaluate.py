"""Evaluation: test-split bits/dim with standard errors, labelled by kind.

Every number follows the likelihood conventions of docs/DESIGN.md: D is the stored pixel
count of the dataset, K its number of grey levels (256, or 17 for digits), and
every family's `log_likelihood` already returns per-example bits/dim through
`genfam.likelihood.bits`. Here the per-example values are averaged over `num_draws`
independent draws of the family's noise (dequantization, posterior samples,
timesteps) and then over the test examples; the standard error is that of the
test mean over examples.

A model that is not generative (the domain classifier, the contrastive
encoders) reports its own per-example test metrics instead (`metrics_report`,
kind 'metrics'): accuracies and recalls averaged over the same test examples
in the same way, with standard errors and chance levels. Metrics that compare
an example with others (retrieval recall@k) compare it within its evaluation
batch: each (global) batch of eval.batch_size test examples is a gallery (the
last one smaller: its padding rows are masked out), so their chance level is
about k / gallery size, computed per example and reported beside them.

Fewer examples than eval.batch_size are evaluated in one batch of their own size (rounded
up to the device count: `evaluated_batch_size`), not padded to eval.batch_size, so that an
expensive bound on a few images (IWAE-1000, AIS, all T terms of a diffusion bound) costs
those images. The values are unchanged where a family draws its noise with the batch as
the leading axis: JAX's (partitionable) threefry draws row i's numbers from its position,
whatever the number of rows after it.
"""
import collections
import math
import time

import jax
import numpy as np

from genfam import sharding
from genfam.data import pipeline
from genfam.family import METRICS_KIND


def mean_and_stderr(values) -> tuple[float, float]:
  """Mean of per-example values [N] and its standard error std(ddof=1) / sqrt(N) (nan for N < 2)."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def batch_results(fn, params, batches, rng, mesh, *, num_draws: int):
  """Yields (mask [B] bool, [num_draws x {name: [B] numpy}]) for each test batch i, in order:
  fn(params, batch, key) with key = fold_in(fold_in(rng, i), d) for draw d.

  Several devices of one process on a CPU (train.cpu_devices): batch i runs whole on device
  i mod n while the other devices run the next batches (JAX dispatches asynchronously), so
  every value equals the one-device value, and a family whose function XLA cannot split by
  rows (DDPM's bound vmaps its U-Net over timesteps, and the vmapped convolution merges the
  timestep axis before the sharded batch axis, so GSPMD gathers the batch onto every device)
  still uses every core. Elsewhere (one device, GPU / TPU, several processes) the batch is
  sharded over the mesh's `data` axis."""
  jitted = jax.jit(fn)
  devices = jax.local_devices()
  key = lambda i, d: jax.random.fold_in(jax.random.fold_in(rng, i), d)
  if jax.process_count() > 1 or len(devices) == 1 or jax.default_backend() != "cpu":
    for i, (batch, mask) in enumerate(batches):
      if i == 0:  # sharded by rows: every device gets an equal share
        pipeline.per_process_batch_size(len(mask) * jax.process_count(), "eval.batch_size")
      batch = sharding.shard_batch(batch, mesh)
      mask = sharding.global_rows(mask, mesh)  # every process's rows, as the gathered values are
      yield mask, [{k: sharding.to_host(v) for k, v in jitted(params, batch, key(i, d)).items()}
                   for d in range(num_draws)]
    return
  placed = [jax.device_put(params, device) for device in devices]
  in_flight = collections.deque()
  for i, (batch, mask) in enumerate(batches):
    n = i % len(devices)
    batch = jax.device_put(batch, devices[n])
    in_flight.append((np.asarray(mask), [jitted(placed[n], batch, jax.device_put(key(i, d), devices[n]))
                                         for d in range(num_draws)]))
    if len(in_flight) == len(devices):
      mask, draws = in_flight.popleft()
      yield mask, [{k: np.asarray(v) for k, v in draw.items()} for draw in draws]
  for mask, draws in in_flight:
    yield mask, [{k: np.asarray(v) for k, v in draw.items()} for draw in draws]


def evaluated_batch_size(batch_size: int, num_examples: int, source_size: int) -> int:
  """The rows of an evaluation batch: eval.batch_size, or, when fewer examples are evaluated
  (num_examples, 0 for all `source_size`), their count rounded up to a multiple of the device
  count (every device of the mesh gets an equal share; the padding rows are masked out)."""
  total = source_size if num_examples <= 0 else min(num_examples, source_size)
  devices = jax.device_count()
  return max(1, min(batch_size, -(-total // devices) * devices))


def likelihood_report(fn, params, source, rng, mesh, *, kind: str, num_bins: int, batch_size: int,
                      num_examples: int = 0, num_draws: int = 1, conditional_on: str = "") -> dict:
  """Mean per-example bits/dim of `fn` over the test split, with its parts.

  fn(params, batch, rng) -> {name: [B] bits/dim} with 'bpd' the total; if fn has
  `prepare(params) -> fn'`, fn' (with its per-evaluation setup done, e.g. the diffusion
  importance sampler's pilot) evaluates the batches instead.
  Returns {'kind', 'conditional_on', 'bpd', 'bpd_stderr', <part>: mean,
  'num_examples', 'num_draws', 'num_bins', 'seconds'}; 'conditional_on' is
  None for -log p(x), else what the likelihood is conditioned on ('label', 'caption').
  """
  start = time.time()
  if hasattr(fn, "prepare"):  # fixes what depends on the parameters alone once per report (e.g. an IS proposal)
    fn = fn.prepare(params)
  sums, count, per_example_total = {}, 0, []
  batch_size = evaluated_batch_size(batch_size, num_examples, len(source))
  batches = pipeline.eval_batches(source, batch_size, num_examples)
  for mask, draws in batch_results(fn, params, batches, rng, mesh, num_draws=num_draws):
    mean = {k: np.mean([dr[k] for dr in draws], axis=0)[mask] for k in draws[0]}
    for k, v in mean.items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(v, dtype=np.float64))
    per_example_total.append(mean["bpd"])
    count += int(mask.sum())
  bpd, bpd_stderr = mean_and_stderr(np.concatenate(per_example_total))
  report = {"kind": kind, "conditional_on": conditional_on or None, "bpd": bpd, "bpd_stderr": bpd_stderr}
  report.update({k: v / count for k, v in sums.items() if k != "bpd"})
  report.update(num_examples=count, num_draws=num_draws, num_bins=num_bins, seconds=time.time() - start)
  return report


def metrics_report(fn, params, source, rng, mesh, *, headline: str, batch_size: int,
                   num_examples: int = 0, num_draws: int = 1) -> dict:
  """Mean per-example test metrics of `fn` over the test split, with standard errors.

  fn(params, batch, rng) -> {name: [B] float}; the batch carries 'mask' bool
  [B] (False on padding rows) beside the data, and its real rows are one
  gallery for metrics that compare examples with each other.
  Returns {'kind': 'metrics', 'headline', <name>: mean, <name>_stderr, ...,
  'num_examples', 'num_draws', 'gallery_size', 'seconds'}, the headline metric
  first; a '<name>_chance' metric (a chance level) gets no standard error.
  """
  start = time.time()
  values, count = {}, 0
  batch_size = evaluated_batch_size(batch_size, num_examples, len(source))
  batches = ((dict(batch, mask=mask), mask) for batch, mask in pipeline.eval_batches(source, batch_size, num_examples))
  for mask, draws in batch_results(fn, params, batches, rng, mesh, num_draws=num_draws):
    for k in draws[0]:
      values.setdefault(k, []).append(np.mean([dr[k] for dr in draws], axis=0)[mask].astype(np.float64))
    count += int(mask.sum())
  if headline not in values:
    raise ValueError(f"the headline metric {headline!r} is not among the test metrics {sorted(values)}")
  report = {"kind": METRICS_KIND, "headline": headline}
  for k in [headline] + sorted(k for k in values if k != headline):
    report[k], stderr = mean_and_stderr(np.concatenate(values[k]))
    if not k.endswith("_chance"):
      report[f"{k}_stderr"] = stderr
  report.update(num_examples=count, num_draws=num_draws, gallery_size=batch_size, seconds=time.time() - start)
  return report


def headline(report: dict) -> tuple[str, float]:
  """(name, value) a report leads with: 'bpd' of a likelihood, the headline metric of a metrics report."""
  name = report.get("headline", "bpd")
  return name, report[name]


def evaluate_family(family, params, source, rng, mesh, *, num_bins: int, batch_size: int,
                    num_examples: int = 0, num_draws: int = 1, extras: bool = True,
                    extra_num_examples: int = 0, done: dict | None = None, on_report=None) -> dict:
  """{kind: report} for the family's main likelihood and (if extras) its extra
  ones, then its test metrics (kind 'metrics') if it has them.

  The extra bounds (e.g. a VAE's IWAE-1000, 1000 decoder passes per image) run
  on the first `extra_num_examples` test examples (0: as many as the main one);
  each report states its own example count. The first report is the one the
  loop shows during training.

  Resuming: a kind in `done` ({kind: report} of an earlier call with the same
  arguments, which would compute it again exactly: every key is fixed by rng)
  is taken from there and not computed; `on_report(reports)` is called with the
  reports so far after each one is computed, so that a caller can keep them.
  """
  done = done or {}
  reports, paired = {}, {}

  def report(kind, compute):
    reports[kind] = done[kind] if kind in done else compute()
    if kind not in done and on_report is not None:
      on_report(dict(reports))

  def extra(j, kind, fn):
    r = likelihood_report(fn, params, source, jax.random.fold_in(rng, j + 1), mesh, kind=kind,
                          num_bins=num_bins, batch_size=batch_size,
                          num_examples=extra_num_examples or num_examples, num_draws=num_draws,
                          conditional_on=family.likelihood_condition)
    if r["num_examples"] < reports[family.likelihood_kind]["num_examples"]:
      # On fewer images than the main number: the main likelihood on those same images beside it,
      # so the two are compared on the same images (e.g. the ELBO on IWAE-1000's first 500).
      if not paired:
        paired.update(likelihood_report(
            family.log_likelihood, params, source, rng, mesh, kind=family.likelihood_kind, num_bins=num_bins,
            batch_size=batch_size, num_examples=r["num_examples"], num_draws=num_draws,
            conditional_on=family.likelihood_condition))
      r["same_images"] = {k: paired[k] for k in ("kind", "bpd", "bpd_stderr", "num_examples")}
    return r

  if family.log_likelihood is not None:
    report(family.likelihood_kind, lambda: likelihood_report(
        family.log_likelihood, params, source, rng, mesh, kind=family.likelihood_kind, num_bins=num_bins,
        batch_size=batch_size, num_examples=num_examples, num_draws=num_draws,
        conditional_on=family.likelihood_condition))
  if family.log_likelihood is not None and extras and family.extra_likelihoods:
    for j, (kind, fn) in enumerate(family.extra_likelihoods.items()):
      report(kind, lambda: extra(j, kind, fn))
  for kind in reports:
    if family.likelihood_note:
      reports[kind]["note"] = family.likelihood_note
  if family.test_metrics is not None:
    report(METRICS_KIND, lambda: metrics_report(
        family.test_metrics, params, source, jax.random.fold_in(rng, 2**20), mesh,
        headline=family.headline_metric, batch_size=batch_size, num_examples=num_examples, num_draws=num_draws))
  return reports


def describe(reports: dict) -> str:
  """One line per report: 'test <kind>: 3.412 ± 0.004 bits/dim (10000 examples, 2 draws, 256 bins ...)',
  with ', conditional on <what>: -log p(x | <what>)' after the kind for a conditional likelihood;
  a metrics report gives one line per metric (`describe_metrics`)."""
  lines = []
  for kind, r in reports.items():
    if kind == METRICS_KIND:
      lines.extend(describe_metrics(r))
      continue
    parts = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k.endswith("_bpd"))
    bins = f"{r['num_bins']} bins per pixel" + ("" if r["num_bins"] == 256 else f": bits/dim uses log2({r['num_bins']})")
    cond = r.get("conditional_on")
    cond = f", conditional on {cond}: -log p(x | {cond})" if cond else ""
    same = r.get("same_images")
    same = (f"; {same['kind']} on the same {same['num_examples']}: {same['bpd']:.4f} ± {same['bpd_stderr']:.4f}"
            if same else "")
    note = f"; {r['note']}" if r.get("note") else ""
    lines.append(f"test {kind}{cond}: {r['bpd']:.4f} ± {r['bpd_stderr']:.4f} bits/dim "
                 f"({r['num_examples']} examples, {r['num_draws']} draws, {bins}{same}{note})"
                 + (f" [{parts}]" if parts else ""))
  return "\n".join(lines)


def describe_metrics(r: dict) -> list[str]:
  """A header line, then one line per metric of a metrics report, the headline first:
  'test metrics: 10000 examples, 1 draws, galleries (evaluation batches) of 250'
  'test class_accuracy: 0.9123 ± 0.0028 (chance 0.1000)'."""
  lines = [f"test metrics: {r['num_examples']} examples, {r['num_draws']} draws, "
           f"galleries (evaluation batches) of {r['gallery_size']}"]
  for name, value in r.items():
    if name in ("kind", "headline", "num_examples", "num_draws", "gallery_size", "seconds") or (
        name.endswith("_stderr") or name.endswith("_chance")):
      continue
    chance = f" (chance {r[name + '_chance']:.4f})" if f"{name}_chance" in r else ""
    lines.append(f"test {name}: {value:.4f} ± {r.get(name + '_stderr', float('nan')):.4f}{chance}")
  return lines
