"""The one training loop: sharding, jit, rng, update, cadence, checkpoints, metrics.

It knows nothing of the family it runs: it builds it by name (`registry`),
calls its pure functions, and owns everything that touches devices, files and
time. Per-step randomness is `fold_in(train_key, step)`; the data order comes
from the checkpointed grain iterator; so a run killed at any moment and
started again with the same command continues exactly as if it had not stopped.
"""
import contextlib
import json
import logging
import math
import os
import resource
import sys

import jax
import jax.numpy as jnp
import numpy as np

from genfam import registry, sharding
from genfam.cpu import host_memory
from genfam.data import pipeline, sources
from genfam.errors import GenfamError
from genfam.evaluation import evaluate, images, sample_quality
from genfam.family import sample_condition
from genfam.loop import cadence, frozen
from genfam.loop import workdir as workdir_guard
from genfam.loop.checkpointing import Checkpointer, config_to_dict
from genfam.loop.logbook import Logbook, progress_bar
from genfam.settings import config_checks


# Eval key index of the final (and --mode=eval) evaluation.
FINAL_EVAL = 2**31 - 1
# The first samples of the sample-quality evaluation kept in WORKDIR/sample_quality_samples.npz.
SAMPLE_QUALITY_KEEP = 16
# The configs of caption-conditional models: the fix named when --caption meets another model.
CAPTION_CONFIGS = ("configs/ddpm.py:caption, configs/gan.py:caption, configs/igpt.py with --config.model.condition=caption, "
                   "configs/code_prior.py:caption, configs/latent_diffusion.py:caption, configs/aligndraw.py")


class Run:
  """What a run needs before its first step: data, family, mesh, keys, state shapes."""

  def __init__(self, config, workdir: str):
    config_checks.check(config)
    # Before the first buffers: XLA's per-step buffers then stay mapped between steps (host_memory).
    # (A config saved before the key existed gets the default.)
    host_memory.retain_freed_memory(config.train.get("malloc_retain_mib", host_memory.DEFAULT_MIB))
    self.config, self.workdir = config, workdir
    loaded = sources.load(config.data)
    self.spec, self.sources, self.provenance = loaded.spec, loaded.sources, loaded.provenance
    print(self.provenance.describe(), flush=True)
    # What the family takes from other runs (a caption model's frozen text encoder), restored here.
    self.family_inputs = frozen.family_inputs(config, self.spec)
    self.family = registry.make_family(config, self.spec, **self.family_inputs)
    check_sample_condition(self.family, config)
    self.mesh = sharding.data_mesh()
    self.loader = pipeline.train_loader(self.sources["train"], config.data.batch_size, config.seed)
    keys = jax.random.split(jax.random.PRNGKey(config.seed), 4)
    self.init_key, self.train_key, self.eval_key, self.sample_key = keys
    self.replicated = sharding.replicated(self.mesh)
    # The first training batch initialises the model (data-dependent init).
    self.example = sharding.shard_batch(next(iter(self.loader)), self.mesh)
    self.abstract_state = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated),
        jax.eval_shape(self.family.init, self.init_key, self.example))
    with quiet_orbax():  # orbax reads every step's metadata here, and logs each unreadable file
      self.checkpointer = Checkpointer(workdir, config, keep=config.train.keep_checkpoints)

  def init_state(self):
    """The family's initial state, replicated. Drawn with the classic threefry:
    parameters are replicated, never sharded, so the partitionable threefry
    pinned for sharded draws buys nothing here, while XLA compiles a
    many-leaf init ~5-7x faster on CPU without it."""
    with jax.threefry_partitionable(False):
      return jax.jit(self.family.init, out_shardings=self.replicated)(self.init_key, self.example)

  def restore(self):
    """-> (state, data_state, meta) of the latest good checkpoint, or None. A corrupt step is
    an expected failure here, which the checkpointer reports in one line of its own (the step
    it moved aside): orbax's own error lines are silenced meanwhile (`quiet_orbax`)."""
    with quiet_orbax():
      return self.checkpointer.restore_latest(self.abstract_state)

  def restore_or_fail(self):
    restored = self.restore()
    if restored is None:
      raise GenfamError(f"no checkpoint in {self.checkpointer.directory}: train first with "
                        f"`python -m genfam.main --config=... --workdir={self.workdir}`")
    return restored

  def evaluate(self, state, num_examples: int, extras: bool, key, done=None, on_report=None) -> dict:
    c = self.config.eval
    return evaluate.evaluate_family(
        self.family, self.family.eval_params(state), self.sources["test"], key, self.mesh,
        num_bins=self.spec.num_bins, batch_size=c.batch_size, num_examples=num_examples,
        num_draws=c.num_draws, extras=extras, extra_num_examples=c.get("extra_num_examples", 0),
        done=done, on_report=on_report)

  def sample_quality(self, state, key) -> dict | None:
    """FID / KID against the real-vs-real floor, text agreement and sampling speed
    (`genfam.evaluation.sample_quality`) when config.eval.sample_quality is set and the family samples;
    else None. Its first samples and their conditions go to WORKDIR/sample_quality_samples.npz
    (the comparison's pictures)."""
    c = self.config.eval
    if not c.get("sample_quality", False) or self.family.sample is None:
      return None
    judges = frozen.load_judges(c.get("classifier_workdir", ""), c.get("clip_workdir", ""), self.spec.name)
    condition = sample_quality.sample_condition(self.family.likelihood_condition,
                                                self.config.sample.get("conditional", False))
    report = sample_quality.evaluate(
        self.family.sample, self.family.eval_params(state), self.sources["test"], self.sources["train"], self.spec,
        key, judges, condition=condition, num_samples=c.get("num_samples", 10000),
        sample_batch_size=c.get("sample_batch_size", 500), batch_size=c.batch_size, keep=SAMPLE_QUALITY_KEEP,
        reference_images=c.get("reference_images", 0), condition_images=c.get("condition_images", 0),
        kid_stats_images=c.get("kid_stats_images", 10000), now=cadence.clock_source(c.get("clock", "wall")))
    report["sample_clock"] = c.get("clock", "wall")   # what sample_images_per_s counts (eval.clock)
    first = report.pop("first_samples")  # the first samples and their conditions, for comparison pictures
    if is_primary():
      np.savez(os.path.join(self.workdir, "sample_quality_samples.npz"), condition=condition, **first)
    return report

  def sample_grid(self, state, step: int, path: str = "", condition=None) -> str | None:
    """Samples config.sample.num images into a PNG: conditioned on `condition` (labels [num]
    or caption tokens [num, L]) if given, else on labels 0, 1, .. if config.sample.conditional;
    None for a model that draws no samples (family.sample is None)."""
    if self.family.sample is None:
      return None
    num = self.config.sample.num
    if condition is None and self.config.sample.get("conditional", False):
      if self.family.likelihood_condition == "caption":  # the captions of the first test images, on every process
        condition = sample_quality.reference(self.sources["test"], num)["caption"]
      else:
        condition = jnp.arange(num, dtype=jnp.int32) % self.spec.num_classes
    samples = self.family.sample(self.family.eval_params(state), jax.random.fold_in(self.sample_key, step),
                                 num, condition)
    samples = sharding.to_host(samples)  # every process takes part; process 0 writes
    path = path or os.path.join(self.workdir, "samples", f"step_{step:08d}.png")
    columns = self.spec.num_classes if condition is not None and np.ndim(condition) == 1 else 0
    if not is_primary():
      return path
    return images.save_grid(path, samples, self.spec.num_bins, columns=columns)


def check_sample_condition(family, config, caption: str | None = None) -> None:
  """Refuses conditional samples that the model would ignore: a caption (`caption`, --caption)
  for a model not conditioned on captions, or config.sample.conditional (samples by label) for
  an unconditional one (`family.sample_condition`)."""
  if family.sample is None:
    return
  kind = sample_condition(family)
  if caption is not None and kind != "caption":
    drawn = "by label" if kind == "label" else "unconditionally"
    instead = " (--config.sample.conditional=True samples it by label)" if kind == "label" else ""
    raise GenfamError(f"--caption needs a caption-conditional model, but this {config.family} model samples {drawn} "
                      f"and would ignore the caption: drop --caption{instead}, or sample a workdir trained with a "
                      f"caption-conditional config ({CAPTION_CONFIGS})")
  if config.sample.get("conditional", False) and not kind:
    raise GenfamError(f"sample.conditional=True asks for samples by label, but this {config.family} model is "
                      f"unconditional and would ignore the labels: set --config.sample.conditional=False, or use a "
                      f"conditional model (trained with --config.model.class_conditional=True where the config has "
                      f"it, or a caption-conditional config: {CAPTION_CONFIGS})")


@contextlib.contextmanager
def quiet_orbax():
  """Orbax's own log lines (absl's logger) off while a checkpoint is read, and from then on the
  'Event loop is closed' errors that a failed read's threads raise after it (unraisable
  exceptions, printed as tracebacks): noise around a corrupt step, which the checkpointer
  reports itself. genfam's own warnings (the root logger) still print."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.CRITICAL + 1)
  if not getattr(sys.unraisablehook, "genfam_quiet", False):
    previous = sys.unraisablehook

    def hook(unraisable):
      error = unraisable.exc_value
      if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
        previous(unraisable)
    hook.genfam_quiet = True
    sys.unraisablehook = hook
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def started(on_start) -> None:
  """Calls `on_start` (if any): the command passed every check and now does its work
  (`genfam.loop.workdir.RefusalLeavesNothing`)."""
  if on_start is not None:
    on_start()


def is_primary() -> bool:
  """Whether this process writes the run's files (metrics, TensorBoard, grids, results):
  process 0 of a multi-process run, or the only one. Checkpoints are orbax's (every
  process writes its part)."""
  return jax.process_index() == 0


def guarded_update(update):
  """Wraps a family's update so a non-finite loss or state leaves the state as it was.

  -> step(state, batch, rng) -> (state, metrics, finite: bool[])
  """

  def step(state, batch, rng):
    new_state, metrics = update(state, batch, rng)
    leaves = [x for x in jax.tree.leaves(new_state) if jnp.issubdtype(x.dtype, jnp.inexact)]
    finite = jnp.isfinite(metrics["loss"])
    for x in leaves:
      finite &= jnp.isfinite(x).all()
    state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    return state, metrics, finite

  return step


def train_and_evaluate(config, workdir: str, allow_config_change: bool = False, on_start=None) -> dict:
  """Trains config.train.num_steps steps (resuming from WORKDIR), then evaluates,
  samples and checkpoints. Returns the final summary (also in WORKDIR/results.json).
  `on_start()` is called once every check has passed, before the first file of the run
  is written (the CLI then records the command).

  Holds WORKDIR's lock throughout (a second run there is refused); on resume a
  config that differs from the checkpoint's in more than the keys that extend or
  observe the run is refused unless `allow_config_change` (then recorded); SIGTERM
  saves a checkpoint at the current step and raises `workdir.Preempted`.
  """
  with workdir_guard.lock(workdir, jax.process_index(), jax.process_count()), \
       workdir_guard.Preemption() as preemption:
    return _train_and_evaluate(config, workdir, allow_config_change, preemption, on_start)


def _train_and_evaluate(config, workdir: str, allow_config_change: bool, preemption, on_start=None) -> dict:
  run = Run(config, workdir)
  c = config.train
  total = c.num_steps
  iterator = iter(run.loader)
  restored = run.restore()
  if restored is None:
    state, step, nonfinite_total, seconds_before, alerts = run.init_state(), 0, 0, 0.0, {}
  else:
    state, data_state, meta = restored
    pipeline.restore_loader_state(iterator, data_state)
    step, nonfinite_total = int(meta["step"]), int(meta.get("nonfinite_total", 0))
    seconds_before, alerts = float(meta.get("train_seconds", 0.0)), dict(meta.get("alerts", {}))
    print(f"resumed from step {step} ({run.checkpointer.directory})", flush=True)
    workdir_guard.check_resume_config(workdir, meta.get("config", {}), config_to_dict(config), step,
                                      allow_config_change, record=is_primary())
  started(on_start)
  # Only now, so that a config refused by the checkpoint leaves the run's config.json alone;
  # and only for a new run: config.json is the config it started with (changes: config_history.jsonl).
  config_path = os.path.join(workdir, "config.json")
  if is_primary() and (restored is None or not os.path.exists(config_path)):
    with open(config_path, "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  logbook = Logbook(workdir, resume_step=step, primary=is_primary())
  train_step = jax.jit(guarded_update(run.family.update), donate_argnums=0,
                       out_shardings=(run.replicated, run.replicated, run.replicated))

  clock = cadence.TrainingClock(seconds_before, now=cadence.clock_source(c.get("clock", "wall")))

  def checkpoint(step, train_seconds=None):
    # train_seconds: training time in this loop summed over every session of the run
    # (periodic evaluations and sample grids left out: cadence.TrainingClock).
    if train_seconds is None:
      train_seconds = clock.seconds()
    run.checkpointer.save(step, state, pipeline.loader_state(iterator),
                          {"nonfinite_total": nonfinite_total, "train_seconds": train_seconds, "alerts": alerts})

  def budget_spent():
    # train.max_train_seconds: a wall-clock budget for the whole run (all sessions),
    # so variants can be compared at equal cost; checked after every step.
    budget = c.get("max_train_seconds", 0.0)
    return budget > 0 and clock.seconds() >= budget

  # config.eval.every_seconds: also evaluate (as train.eval_every does) each time the run's
  # training time passes a multiple of it, so runs on a time budget get a curve over time.
  eval_period = float(config.eval.get("every_seconds", 0.0))
  next_eval_seconds = (math.floor(seconds_before / eval_period) + 1) * eval_period if eval_period > 0 else 0.0
  bar = progress_bar(total, step, c.progress)
  consecutive_bad, first_bad, last_eval, timer = 0, None, {}, None
  images_seen, start_step = 0, step
  while step < total and not (step > 0 and budget_spent()):
    batch = sharding.shard_batch(next(iterator), run.mesh)
    state, metrics, finite = train_step(state, batch, jax.random.fold_in(run.train_key, step))
    step += 1
    if step == start_step + 2:  # time from the end of the first (compiling) step
      jax.block_until_ready(state)
      timer, images_seen = clock.seconds(), 0
    elif timer is not None:
      images_seen += config.data.batch_size
    if not bool(finite):
      nonfinite_total += 1
      consecutive_bad += 1
      first_bad = step if consecutive_bad == 1 else first_bad
      if consecutive_bad >= c.max_consecutive_nonfinite:
        raise GenfamError(f"{consecutive_bad} consecutive non-finite steps ({first_bad}..{step}); no step was "
                          f"applied and the last checkpoint is intact: lower --config.optim.learning_rate or "
                          f"raise --config.optim.warmup_steps")
    else:
      consecutive_bad = 0
    bar.update(1)
    if cadence.is_due(step, c.log_every, total, first=True):
      row = {k: v for k, v in metrics.items()}
      row.update(nonfinite_steps=nonfinite_total, skipped=float(not bool(finite)))
      if timer is not None and images_seen:
        row["images_per_s"] = images_seen / (clock.seconds() - timer)
      row = logbook.write(step, "train", row)
      note_alerts(row, step, alerts)
      bar.set_postfix(loss=f"{row['loss']:.4f}" if isinstance(row["loss"], float) else row["loss"],
                      **({name: f"{value:.4f}" for name, value in [evaluate.headline(last_eval)]} if last_eval else {}))
    seconds = clock.seconds()
    due_by_time = eval_period > 0 and seconds >= next_eval_seconds
    if ((c.eval_every > 0 and cadence.is_due(step, c.eval_every, total)) or due_by_time) and step != total:
      with clock.excluded():
        reports = run.evaluate(state, c.eval_examples, extras=False, key=jax.random.fold_in(run.eval_key, step))
      last_eval = next(iter(reports.values()))
      logbook.write(step, "eval", {**{k: v for k, v in last_eval.items() if isinstance(v, (int, float))},
                                   "train_seconds": seconds})
      next_eval_seconds = (math.floor(seconds / eval_period) + 1) * eval_period if eval_period > 0 else 0.0
    if c.sample_every > 0 and cadence.is_due(step, c.sample_every, total) and step != total:
      with clock.excluded():
        run.sample_grid(state, step)
    if cadence.is_due(step, c.checkpoint_every, total):
      checkpoint(step)
    if preemption.requested:
      checkpoint(step)
      bar.close()
      logbook.close()
      run.checkpointer.close()
      raise workdir_guard.Preempted(step, workdir)
  bar.close()
  if step < total:
    print(f"stopped at step {step} of {total}: train.max_train_seconds={c.max_train_seconds:g} "
          f"of training time spent", flush=True)
  train_seconds = clock.seconds() if step > start_step else seconds_before
  if step not in run.checkpointer.steps():
    checkpoint(step, train_seconds)
  train_images_per_s = images_seen / (clock.seconds() - timer) if timer is not None and images_seen else None
  if train_images_per_s is None:  # nothing trained in this session: keep the last session's rate
    train_images_per_s = previous_results(workdir).get("train_images_per_s")
  if c.get("final_eval", True):
    summary = finish(run, state, step, logbook, train_seconds)
  else:  # judged later (--mode=eval): the checkpoint and the training numbers only
    summary = {"step": step, "family": config.family, "dataset": run.spec.name, "data": run.provenance.as_dict(),
               "test": {}, "samples": None}
    print(f"train.final_eval=False: no test evaluation; judge step {step} with --mode=eval", flush=True)
  summary["train_images_per_s"] = train_images_per_s
  summary["nonfinite_steps"] = nonfinite_total
  summary["alerts"] = alerts
  summary["train_seconds"] = train_seconds
  summary["train_clock"] = c.get("clock", "wall")
  summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  summary["processes"] = jax.process_count()
  summary["devices"] = jax.device_count()
  if is_primary():
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(summary, f, indent=2)
  logbook.close()
  run.checkpointer.close()
  return summary


def note_alerts(row: dict, step: int, alerts: dict) -> None:
  """Adds to `alerts` (name -> first step) each metric `alert_<name>` of a logged
  row that is > 0, printing `warning: <name> at step N` when a name first appears.
  Families raise alerts through their metrics; the loop never knows which."""
  for key, value in row.items():
    name = key[len("alert_"):]
    if key.startswith("alert_") and isinstance(value, float) and value > 0 and name not in alerts:
      alerts[name] = step
      print(f"warning: {name} at step {step}", flush=True)


def previous_results(workdir: str) -> dict:
  """WORKDIR/results.json of an earlier session, or {}."""
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def finish(run: Run, state, step: int, logbook: Logbook, train_seconds: float | None = None) -> dict:
  """The end of a run (also re-run when a finished job is restarted): full test
  evaluation with every bound the family offers, sample quality if the config asks
  (eval.sample_quality), and a sample grid. `train_seconds` (the run's training time)
  goes into the logged test rows."""
  reports = run.evaluate(state, run.config.eval.num_examples, extras=True,
                         key=jax.random.fold_in(run.eval_key, FINAL_EVAL))
  timing = {} if train_seconds is None else {"train_seconds": train_seconds}
  for kind, report in reports.items():
    logbook.write(step, f"test/{kind}", {**{k: v for k, v in report.items() if isinstance(v, (int, float))}, **timing})
  print(evaluate.describe(reports), flush=True)
  quality = run.sample_quality(state, jax.random.fold_in(run.sample_key, FINAL_EVAL))
  if quality is not None:
    logbook.write(step, "test/sample_quality", {**{k: v for k, v in quality.items() if isinstance(v, (int, float))},
                                                **timing})
    print(sample_quality.describe(quality), flush=True)
  grid = run.sample_grid(state, step, os.path.join(run.workdir, "samples.png"))
  if grid:
    print(f"samples: {grid}", flush=True)
  summary = {"step": step, "family": run.config.family, "dataset": run.spec.name, "data": run.provenance.as_dict(),
             "test": reports, "samples": grid}
  if quality is not None:
    summary["sample_quality"] = quality
  return summary


def evaluate_workdir(config, workdir: str, on_start=None) -> dict:
  """--mode=eval: test bits/dim of the latest readable checkpoint in WORKDIR (its step is
  printed first); `on_start()` once it is restored.

  Resumable: each finished report (a likelihood, the test metrics, the sample quality) is
  kept in WORKDIR/eval_step_<step>.partial.json with the config it was computed under, and
  a rerun with the same config on the same step takes it from there instead of computing
  it again (every evaluation key is fixed, so the numbers are the same); the finished
  eval_step_<step>.json replaces the partial file. (One process only: a multi-process run
  computes everything.)"""
  run = Run(config, workdir)
  state, _, meta = run.restore_or_fail()
  started(on_start)
  step = int(meta["step"])
  print(f"evaluating step {step} (the latest readable checkpoint in {run.checkpointer.directory})", flush=True)
  partial = PartialEvaluation(os.path.join(workdir, f"eval_step_{step}.partial.json"), config, step)
  reports = run.evaluate(state, config.eval.num_examples, extras=True, key=jax.random.fold_in(run.eval_key, FINAL_EVAL),
                         done=partial.kept.get("test", {}), on_report=lambda r: partial.keep("test", r))
  print(evaluate.describe(reports), flush=True)
  summary = {"step": step, "data": run.provenance.as_dict(), "test": reports}
  quality = partial.kept.get("sample_quality")
  if quality is None:
    quality = run.sample_quality(state, jax.random.fold_in(run.sample_key, FINAL_EVAL))
    if quality is not None:
      partial.keep("sample_quality", quality)
  if quality is not None:
    print(sample_quality.describe(quality), flush=True)
    summary["sample_quality"] = quality
  if is_primary():
    path = os.path.join(workdir, f"eval_step_{step}.json")
    with open(path, "w") as f:
      json.dump(summary, f, indent=2)
    partial.remove()
    print(f"step {step} evaluated: {path}", flush=True)
  return summary


class PartialEvaluation:
  """The finished parts of one --mode=eval at one step, kept on disk with the config they were
  computed under: {'config', 'step', 'test': {kind: report}, 'sample_quality': report}.
  `kept` holds the parts of an earlier run with the same config and step (else nothing)."""

  def __init__(self, path: str, config, step: int):
    self.path, self.kept = path, {}
    self.header = {"config": config_to_dict(config), "step": step}
    self.enabled = jax.process_count() == 1
    if self.enabled and os.path.exists(path):
      try:
        with open(path) as f:
          earlier = json.load(f)
      except (OSError, ValueError):
        earlier = {}
      if {k: earlier.get(k) for k in self.header} == self.header:
        self.kept = {k: v for k, v in earlier.items() if k not in self.header}
        parts = [*self.kept.get("test", {}), *(["sample_quality"] if "sample_quality" in self.kept else [])]
        print(f"reusing {', '.join(parts)} from {path} (the same config and step)", flush=True)

  def keep(self, part: str, value) -> None:
    if not self.enabled:
      return
    self.kept[part] = value
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      json.dump({**self.header, **self.kept}, f)
    os.replace(tmp, self.path)  # a kill mid-write leaves the previous parts

  def remove(self) -> None:
    if os.path.exists(self.path):
      os.remove(self.path)


def sample_workdir(config, workdir: str, path: str = "", caption: str | None = None, on_start=None) -> str:
  """--mode=sample: a sample grid PNG from the latest checkpoint in WORKDIR, at `path` (a relative
  path is in WORKDIR; default WORKDIR/samples_step_<step>.png); with `caption`, every sample is
  conditioned on that sentence (tokenized with the dataset's vocabulary), which a model not
  conditioned on captions refuses. `on_start()` once the checkpoint is restored."""
  run = Run(config, workdir)
  if run.family.sample is None:
    raise GenfamError(f"family {config.family!r} draws no samples: --mode=sample is for generative families; "
                      f"use --mode=eval for its test metrics")
  check_sample_condition(run.family, config, caption)
  state, _, meta = run.restore_or_fail()
  started(on_start)
  path = os.path.join(workdir, path or f"samples_step_{int(meta['step'])}.png")  # an absolute path stays as it is
  print(f"sampling step {int(meta['step'])} (the latest readable checkpoint in {run.checkpointer.directory})",
        flush=True)
  condition = None
  if caption is not None:
    from genfam.data import captions
    tokens = captions.encode_sentence(caption, run.spec)                       # [L] int32
    condition = np.tile(tokens[None], (config.sample.num, 1))                  # [num, L]
    print(f"caption: {captions.decode(tokens, run.spec)!r}", flush=True)
  grid = run.sample_grid(state, int(meta["step"]), path, condition=condition)
  print(f"samples: {grid}", flush=True)
  return grid
