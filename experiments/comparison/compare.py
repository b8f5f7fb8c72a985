"""The cross-family comparison: every family trained for the same wall-clock budget, judged by one evaluation.

  python -m experiments.comparison.compare --root=runs/compare --budget_minutes=20          # defaults (N = 10000: long)
  python -m experiments.comparison.compare --root=runs/compare --budget_minutes=60          # continues the same runs
  # the README's table: 4 minutes per family on one core each, N = 200, 25 test images; 70 min on 2 cores
  python -m experiments.comparison.compare --root=runs/compare --judges_from=runs --budget_minutes=4 --parallel=2 \
      --evals_per_budget=2 --eval_images=8 --test_images=25 --num_samples=200 --ais_steps=50 --ais_chains=2
  python -m experiments.comparison.compare --smoke --root=/tmp/compare-smoke                # every smoke config, seconds each

What it does, in order:
1. Trains the judges, the domain classifier (configs/classifier.py) and CLIP
   (configs/clip.py), into ROOT/classifier and ROOT/clip (their own step counts,
   capped by --judge_budget_minutes), or takes finished ones from --judges_from.
2. Trains (or resumes) every generative entry of ENTRIES in ROOT/<name> as an
   ordinary `python -m genfam.main` run (a subprocess each; --in_process for
   tests) on the same data, with train.max_train_seconds = the budget and
   train.num_steps out of reach, so the budget decides where each stops; rerun
   with a larger budget and the runs continue. Each run evaluates every
   `eval.every_seconds` = budget / --evals_per_budget (8) of training (train.eval_examples test
   images: the bits/dim-over-time curve), then at its end the full likelihood
   evaluation and, with eval.sample_quality, FID / KID on the classifier's
   features beside the real-vs-real floor, text agreement and sampling speed
   (`genfam.evaluation.sample_quality`) on the same test images and N samples.
   A run whose budget and settings have not changed since it finished
   (ROOT/<name>/compare_stamp.json) is not run again.
3. Times sampling by setting on the trained models (unconditional diffusion:
   DDPM's T steps and DDIM at 10 / 50 / 100 steps; the image-GPT: cached vs
   uncached), with experiments.benchmarks.diffusion_sampling_speed / igpt_sampling_speed
   (--no-sampling_speed skips it; not with --smoke).
4. Writes OUT (default experiments/results/compare; ROOT/results with --smoke):
   compare.md / compare.csv / compare.json, one row per entry, and the plots of
   `experiments.comparison.compare_plots`; notebooks/compare.ipynb shows them.

Likelihoods: each row says what its number is (exact; an upper bound; a
stochastic upper bound: docs/DESIGN.md, "Likelihood conventions") and what it
is conditioned on; numbers are comparable only within one condition, and a
bound only says the model is at least that good.
"""
import argparse
import concurrent.futures
import csv
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import time
from typing import Any, NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/<group>/<module>.py
FAR_AWAY_STEPS = 10**9      # train.num_steps of a budgeted run: the budget stops it


class Entry(NamedTuple):
  """One row of the comparison: configs/<config>.py[:variant] with overrides.

  The smoke run uses variant 'smoke' (or '<variant>_smoke'); text_encoder: the
  run needs model.text_encoder_workdir = the comparison's CLIP. A two-stage row (a prior
  over a frozen autoencoder's codes) names its stage-1 Entry in `stage1`: that run trains
  first, on `stage1.budget_share` of the row's budget, and the prior (this entry) on
  `budget_share` of it, with model.autoencoder_workdir naming the stage-1 run, so a row's
  budget counts both stages' training.
  """
  name: str
  config: str
  variant: str = ""
  overrides: tuple = ()
  text_encoder: bool = False
  stage1: Any = None            # the stage-1 Entry of a two-stage row
  budget_share: float = 1.0     # this run's share of the row's training budget

  def config_arg(self, smoke: bool) -> str:
    variant = (f"{self.variant}_smoke" if self.variant else "smoke") if smoke else self.variant
    return os.path.join(REPO, "configs", f"{self.config}.py") + (f":{variant}" if variant else "")


JUDGES = (Entry("classifier", "classifier"), Entry("clip", "clip"))
ENTRIES = (
    Entry("independent", "independent"),
    Entry("realnvp", "realnvp"),
    Entry("glow", "glow"),
    Entry("vae", "vae"),
    Entry("ddpm", "ddpm"),
    Entry("iddpm", "iddpm"),
    Entry("vdm", "vdm"),
    Entry("igpt", "igpt"),
    Entry("gan", "gan"),
    Entry("ddpm_caption", "ddpm", "caption", text_encoder=True),
    Entry("igpt_caption", "igpt", overrides=(("model.condition", "caption"),)),
    Entry("gan_caption", "gan", "caption", text_encoder=True),
    Entry("aligndraw", "aligndraw"),   # caption-conditional: its own bidirectional LSTM over the words
    # two-stage rows: half the budget trains the autoencoder (shared by the row pair), half the prior
    Entry("code_prior", "code_prior", stage1=Entry("vqvae", "vqvae", budget_share=0.5), budget_share=0.5),
    Entry("code_prior_caption", "code_prior", "caption", stage1=Entry("vqvae", "vqvae", budget_share=0.5),
          budget_share=0.5),
    Entry("latent_diffusion", "latent_diffusion",
          stage1=Entry("latent_autoencoder", "latent_autoencoder", budget_share=0.5), budget_share=0.5),
    Entry("latent_diffusion_caption", "latent_diffusion", "caption", text_encoder=True,
          stage1=Entry("latent_autoencoder", "latent_autoencoder", budget_share=0.5), budget_share=0.5),
)


def overrides_for(entry: Entry, args, root: str) -> dict:
  """The --config.<key>=<value> of one entry's run (judges: data and budget only)."""
  out = dict(entry.overrides)
  out["train.progress"] = False
  if args.dataset:
    out["data.name"] = args.dataset
  if entry in JUDGES:
    if args.judge_budget_minutes > 0 and not args.smoke:
      out["train.max_train_seconds"] = 60.0 * args.judge_budget_minutes
    return out
  budget = 60.0 * args.budget_minutes * entry.budget_share
  out["train.max_train_seconds"] = budget
  if entry.stage1 is not None:
    out["model.autoencoder_workdir"] = os.path.join(root, entry.stage1.name)
  if not args.smoke:  # smoke configs keep their few steps: the budget or the steps, whichever ends first
    out["train.num_steps"] = FAR_AWAY_STEPS
    out["eval.every_seconds"] = budget / args.evals_per_budget
  judges = judge_root(args, root)
  out.update({"eval.sample_quality": True, "eval.classifier_workdir": os.path.join(judges, "classifier"),
              "eval.clip_workdir": os.path.join(judges, "clip"), "eval.num_samples": args.num_samples})
  if not args.smoke:  # four draws: the first compiles, the other three time the sampler
    out["eval.sample_batch_size"] = max(2, -(-args.num_samples // 4))
  if args.test_images:  # every row's likelihoods (an extra bound too) on the same first test images
    out["eval.num_examples"] = args.test_images
    if "extra_num_examples" in _config(entry, args.smoke).eval:
      out["eval.extra_num_examples"] = args.test_images
  if args.eval_images:
    out["train.eval_examples"] = args.eval_images
  if entry.config == "gan":
    out.update({k: v for k, v in (("eval.ais_steps", args.ais_steps), ("eval.ais_chains", args.ais_chains)) if v})
  if args.smoke:  # draws of the sample grid's size: one compiled sampler serves both; no periodic work
    out.update({"train.eval_every": 0, "train.checkpoint_every": 0})
    out["eval.sample_batch_size"] = int(_config(entry, True).sample.num)
  if entry.text_encoder:
    out["model.text_encoder_workdir"] = os.path.join(judges, "clip")
  return out


def _config(entry: Entry, smoke: bool):
  """The entry's config as its file defines it (before overrides)."""
  from genfam.settings import config_files
  path, _, variant = entry.config_arg(smoke).partition(":")
  return config_files.load(path, variant)


def core_sets(parallel: int) -> list[tuple]:
  """This process's CPU cores split into `parallel` equal disjoint sets, one per concurrent run."""
  cores = sorted(os.sched_getaffinity(0))
  if parallel > 1 and shutil.which("taskset") is None:
    raise SystemExit("error: --parallel needs util-linux's taskset to pin runs to cores; install it or use --parallel=1")
  if not 1 <= parallel <= len(cores):
    raise SystemExit(f"error: --parallel={parallel} needs 1..{len(cores)} (this process may use {len(cores)} cores)")
  per = len(cores) // parallel
  return [tuple(cores[i * per:(i + 1) * per]) for i in range(parallel)]


def judge_root(args, root: str) -> str:
  """Where the classifier and CLIP live: --judges_from (already trained) or ROOT (trained here)."""
  return os.path.abspath(args.judges_from) if args.judges_from else root


def check_judges(path: str):
  """A one-line error unless `path` holds finished classifier and CLIP runs."""
  for judge in JUDGES:
    if not os.path.exists(os.path.join(path, judge.name, "results.json")):
      raise SystemExit(f"error: --judges_from={path} has no finished {judge.name} run ({judge.name}/results.json); "
                       f"train it with `python -m genfam.main --config=configs/{judge.config}.py "
                       f"--workdir={os.path.join(path, judge.name)}` or leave --judges_from out")


def command(entry: Entry, workdir: str, overrides: dict, smoke: bool) -> list[str]:
  return [sys.executable, "-m", "genfam.main", f"--config={entry.config_arg(smoke)}", f"--workdir={workdir}",
          *[f"--config.{k}={v}" for k, v in overrides.items()]]


def stage1_overrides(entry: Entry, args) -> dict:
  """The --config.<key>=<value> of a two-stage row's stage-1 run: its share of the budget, no sample judging."""
  out = dict(entry.overrides)
  out.update({"train.progress": False, "train.max_train_seconds": 60.0 * args.budget_minutes * entry.budget_share})
  if args.dataset:
    out["data.name"] = args.dataset
  if not args.smoke:
    out.update({"train.num_steps": FAR_AWAY_STEPS, "eval.every_seconds": 0.0})
  return out


def train_entry(entry: Entry, root: str, args, cores: tuple = (), stage1_of: Entry | None = None) -> dict:
  """Trains / resumes / re-evaluates one entry unless its stamp says it is done; -> its results.json
  (a two-stage row's: train_seconds counts both stages, 'stage1' holds its autoencoder's).
  cores: run the subprocess on these CPU cores only (taskset); () = all. stage1_of: the row whose
  stage 1 this entry is."""
  workdir = os.path.join(root, entry.name)
  if entry.stage1 is not None:   # its autoencoder first, on its share of the budget
    stage1 = train_entry(entry.stage1, root, args, cores, stage1_of=entry)
  overrides = stage1_overrides(entry, args) if stage1_of is not None else overrides_for(entry, args, root)
  cmd = command(entry, workdir, overrides, args.smoke)
  stamp = {"config": entry.config_arg(args.smoke).replace(REPO + os.sep, ""), "overrides": overrides}
  if entry.stage1 is not None:   # a prior is trained again when its autoencoder changed
    stamp["stage1_step"] = stage1["step"]
  stamp_path, results_path = os.path.join(workdir, "compare_stamp.json"), os.path.join(workdir, "results.json")
  if os.path.exists(stamp_path) and os.path.exists(results_path):
    with open(stamp_path) as f:
      if json.load(f) == stamp:
        print(f"{entry.name}: done with these settings ({workdir})", flush=True)
        with open(results_path) as g:
          results = json.load(g)
        return with_stage1(results, stage1) if entry.stage1 is not None else results
  print(f"{entry.name}: $ python -m genfam.main " + " ".join(cmd[3:]).replace(REPO + os.sep, ""), flush=True)
  start = time.time()
  if args.in_process:
    from genfam.loop import train
    from genfam.settings import config_files
    train.train_and_evaluate(config_files.apply_overrides(_config(entry, args.smoke), overrides), workdir)
  else:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "compare.log"), "a") as log:
      pin = ["taskset", "-c", ",".join(map(str, cores))] if cores else []   # no preexec_fn: JAX is threaded
      subprocess.run(pin + cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
  print(f"{entry.name}: finished in {time.time() - start:.0f} s", flush=True)
  with open(stamp_path, "w") as f:
    json.dump(stamp, f, indent=1)
  with open(results_path) as f:
    results = json.load(f)
  return with_stage1(results, stage1) if entry.stage1 is not None else results


def with_stage1(results: dict, stage1: dict) -> dict:
  """A two-stage row's results: train_seconds of both stages; 'stage1' its autoencoder's step and seconds."""
  return {**results, "train_seconds": results["train_seconds"] + stage1["train_seconds"],
          "stage1": {"step": stage1["step"], "train_seconds": stage1["train_seconds"]}}


# ---------------------------------------------------------------------------------------- the table

def likelihood_type(kind: str, report: dict) -> str:
  """What a likelihood number is, for the discrete data, by docs/DESIGN.md's one rule: 'exact' (the
  model's own -log p, computed deterministically), 'upper bound' (every variational bound: each is
  computed with Monte Carlo draws of noise, dequantization or t, an unbiased estimate of the bound,
  so sampled-t and continuous-time bounds are labelled as the full ones), or a stochastic upper
  bound (AIS: an upper bound only in expectation)."""
  if kind == "ais":
    return "stochastic upper bound (AIS estimate)"
  if "discretization_bpd" in report:  # a density of dequantized data: exact for it, a bound on the discrete NLL
    return "upper bound (exact for the dequantized density)"
  if kind == "exact":
    return "exact"
  return "upper bound"


def parameter_count(config) -> int:
  """Number of parameters of the family's eval_params (the GAN: its generator), from shapes alone."""
  import jax
  import numpy as np

  from genfam.data import sources
  from genfam.loop import frozen
  spec = sources.dataset_spec(config.data.name)
  family = frozen.make_family(config, spec)
  state = jax.eval_shape(family.init, jax.random.PRNGKey(0), frozen.example_batch(spec, 2))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(family.eval_params(state))))


def row(entry: Entry, root: str, result: dict, smoke: bool) -> dict:
  """The comparison row of one finished entry (None: does not apply)."""
  import ml_collections
  workdir = os.path.join(root, entry.name)
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  kind, report = next((k, r) for k, r in result["test"].items() if k != "metrics")
  extras = [f"{k} {r['bpd']:.3f} ± {r['bpd_stderr']:.3f} ({r['num_examples']} images)"
            for k, r in result["test"].items() if k not in (kind, "metrics")]
  q = result["sample_quality"]
  attrs = [q[k] for k in q if k.endswith("_agreement") and k != "class_agreement" and not math.isnan(q[k])]
  attrs_real = [q[k] for k in q if k.endswith("_agreement_real") and k != "class_agreement_real"]
  return {
      "name": entry.name, "family": config.family, "config": entry.config_arg(smoke).replace(REPO + os.sep, ""),
      "condition": report.get("conditional_on") or "none", "likelihood_kind": kind,
      "likelihood_type": likelihood_type(kind, report), "bpd": report["bpd"], "bpd_stderr": report["bpd_stderr"],
      "test_images": report["num_examples"], "other_bounds": "; ".join(extras) or "none",
      "likelihood_seconds_per_image": report["seconds"] / max(report["num_examples"], 1),
      "samples_conditioned_on": q["condition"] or "none", "num_samples": q["num_samples"],
      "fid": q["fid"], "fid_floor": q["fid_floor"], "kid": q["kid"], "kid_std": q["kid_std"],
      "kid_floor": q["kid_floor"],
      "class_agreement": q.get("class_agreement"), "class_agreement_real": q.get("class_agreement_real"),
      "attribute_agreement": sum(attrs) / len(attrs) if attrs else None,
      "attribute_agreement_real": sum(attrs_real) / len(attrs_real) if attrs_real else None,
      "clip_cosine": q.get("clip_cosine"), "clip_cosine_real": q.get("clip_cosine_real"),
      "parameters": parameter_count(config), "steps": result["step"],
      "train_minutes": result["train_seconds"] / 60, "train_images_per_s": result.get("train_images_per_s"),
      "sample_images_per_s": q["sample_images_per_s"], "workdir": workdir}


def _pm(value, err, digits):
  return f"{value:.{digits}f} ± {err:.{digits}f}"


def _or_na(value, fmt):
  return "n/a" if value is None else fmt(value)


def _cores_note(args) -> str:
  if args.parallel > 1 and not args.in_process:
    return f"{args.parallel} runs at a time, each pinned to {len(core_sets(args.parallel)[0])} core(s)"
  return f"one run at a time on all {len(os.sched_getaffinity(0))} cores"


def markdown(rows: list[dict], args, note: str = "") -> str:
  """The table, then which likelihoods may be compared with which. note: what the budget and the
  judging were (default: this comparison's, from args)."""
  head = ("| family | likelihood (bits/dim) | what it is | conditional on | test images | other bounds | FID (floor) | "
          "KID (floor) | class agreement (real) | attribute agreement (real) | CLIP cosine (real) | parameters | "
          "training | train images/s | sample images/s |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    cells = [f"{r['name']} (`{r['config']}`)", f"{_pm(r['bpd'], r['bpd_stderr'], 3)} ({r['likelihood_kind']})",
             r["likelihood_type"], r["condition"], str(r["test_images"]), r["other_bounds"],
             f"{r['fid']:.2f} ({r['fid_floor']:.2f})", f"{r['kid']:.4f} ({r['kid_floor']:.4f})",
             _or_na(r["class_agreement"], lambda v: f"{v:.3f} ({r['class_agreement_real']:.3f})"),
             _or_na(r["attribute_agreement"], lambda v: f"{v:.3f} ({r['attribute_agreement_real']:.3f})"),
             _or_na(r["clip_cosine"], lambda v: f"{v:.3f} ({r['clip_cosine_real']:.3f})"),
             f"{r['parameters']:,}", f"{r['train_minutes']:.1f} min, {r['steps']} steps",
             _or_na(r["train_images_per_s"], lambda v: f"{v:.0f}"), f"{r['sample_images_per_s']:.1f}"]
    lines.append("| " + " | ".join(cells) + " |")
  groups = {}
  for r in rows:
    groups.setdefault(r["condition"], []).append(r)
  note = note or (f"Budget {args.budget_minutes:g} min of training per family ({_cores_note(args)}; evaluations "
                  "during training not counted); FID / KID on the domain classifier's "
                  f"features between {rows[0]['num_samples'] if rows else args.num_samples} samples and the first "
                  "test images, floor = as many train images against the same test images; agreement columns only "
                  "for conditional samples (label: class; caption: class, attributes, CLIP), real test images in "
                  "brackets.")
  notes = ["", note, "", "Likelihoods may be compared only within one condition (-log p(x), -log p(x | label), "
           "-log p(x | caption)); an exact number is the model's own, a bound lies above it, so a bound below "
           "another row's exact number shows that model is better, while a bound above it shows nothing:"]
  for condition, members in groups.items():
    ranked = sorted(members, key=lambda r: r["bpd"])
    what = "-log p(x)" if condition == "none" else f"-log p(x | {condition})"
    notes.append(f"- {what}: " + ", ".join(f"{r['name']} {r['bpd']:.3f} ({r['likelihood_type']})" for r in ranked))
  return "\n".join(lines + notes) + "\n"


# ---------------------------------------------------------------------------------------- sampling speed

DDIM_SPEED_STEPS = "10,50,100"   # DDIM step counts timed beside DDPM's T ancestral steps


def speed_command(row: dict, args) -> tuple[list[str], str] | None:
  """The sampling-speed experiment of a row's family, or None: DDIM at several step counts and
  DDPM's T steps for unconditional diffusion (experiments.benchmarks.diffusion_sampling_speed), cached vs
  uncached sampling for the unconditional image-GPT (experiments.benchmarks.igpt_sampling_speed). -> (argv, json)."""
  workdir = row["workdir"]
  if row["condition"] != "none":
    return None
  if row["family"] == "diffusion":
    out = os.path.join(workdir, "sampling_speed")
    return ([sys.executable, "-m", "experiments.benchmarks.diffusion_sampling_speed", f"--workdir={workdir}", f"--out={out}",
             f"--steps={DDIM_SPEED_STEPS}", f"--num={args.speed_images}"], os.path.join(out, "sampling_speed.json"))
  if row["family"] == "igpt":
    out = os.path.join(workdir, "igpt_sampling_speed.json")
    return ([sys.executable, "-m", "experiments.benchmarks.igpt_sampling_speed", f"--workdir={workdir}", f"--out={out}",
             f"--num={args.speed_images}", "--uncached_num=2"], out)
  return None


def sampling_speeds(rows: list[dict], args) -> list[dict]:
  """Runs each row's sampling-speed experiment on its trained model (again only when the run's
  results.json is newer than the timing) -> [{'name', 'sampler', 'steps', 'images_per_s', ...}]."""
  out = []
  for r in rows:
    job = speed_command(r, args)
    if job is None:
      continue
    cmd, path = job
    results = os.path.join(r["workdir"], "results.json")
    if not (os.path.exists(path) and os.path.getmtime(path) > os.path.getmtime(results)):
      print(f"{r['name']}: sampling speed: $ python " + " ".join(cmd[1:]).replace(REPO + os.sep, ""), flush=True)
      with open(os.path.join(r["workdir"], "compare.log"), "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    with open(path) as f:
      timing = json.load(f)
    for t in timing["rows"]:
      steps = t["steps"] if r["family"] == "diffusion" else timing["num_dims"]   # image-GPT: one per pixel
      out.append({"name": r["name"], "sampler": t["sampler"], "steps": steps,
                  "images": t.get("num_images", t.get("num")), "images_per_s": t["images_per_s"],
                  "seconds_per_image": 1.0 / t["images_per_s"]})
  return out


def speed_markdown(speeds: list[dict]) -> str:
  lines = ["", "Sampling speed by setting, on the same trained models (one timed call after compiling; "
           "image-GPT: 'cached' runs one token per call against the key-value cache, 'uncached' the full "
           "forward pass over every position):", "",
           "| family | sampler | sequential network calls per image | images per call | images/s | s/image |",
           "|---|---|---:|---:|---:|---:|"]
  for s in speeds:
    lines.append(f"| {s['name']} | {s['sampler']} | {s['steps']} | "
                 f"{s['images']} | {s['images_per_s']:.2f} | {s['seconds_per_image']:.3f} |")
  return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], out: str, root: str, args, speeds: list[dict] = ()) -> dict:
  """compare.md / .csv / .json and the plots in `out`; -> {name: path}."""
  from experiments.comparison import compare_plots
  os.makedirs(out, exist_ok=True)
  paths = {"markdown": os.path.join(out, "compare.md"), "csv": os.path.join(out, "compare.csv"),
           "json": os.path.join(out, "compare.json")}
  with open(paths["markdown"], "w") as f:
    f.write(markdown(rows, args) + (speed_markdown(speeds) if speeds else ""))
  with open(paths["csv"], "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in rows])
  with open(paths["json"], "w") as f:
    json.dump({"budget_minutes": args.budget_minutes, "num_samples": args.num_samples, "smoke": args.smoke,
               "root": root, "judges": judge_root(args, root), "test_images": args.test_images or "each config's own",
               "cores": _cores_note(args),
               "rows": rows, "sampling_speed": list(speeds)}, f, indent=2)
  paths.update(compare_plots.draw_all(rows, out))
  return paths


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="runs/compare", help="where the runs live (ROOT/<name>)")
  parser.add_argument("--out", default="", help="tables and plots (default experiments/results/compare; "
                      "ROOT/results with --smoke)")
  parser.add_argument("--budget_minutes", type=float, default=None,
                      help="training wall-clock per family (default 20; 1 with --smoke, where the steps end first)")
  parser.add_argument("--judge_budget_minutes", type=float, default=30.0,
                      help="cap on the classifier's and CLIP's training (0: their configs' step counts)")
  parser.add_argument("--judges_from", default="", help="a folder with finished classifier/ and clip/ runs to "
                      "judge with (default: train them in ROOT)")
  parser.add_argument("--evals_per_budget", type=int, default=8,
                      help="evaluations during each run (eval.every_seconds = budget / this): the bits/dim curve")
  parser.add_argument("--test_images", type=int, default=0,
                      help="eval.num_examples of every entry, so all likelihoods are on the same first test images "
                      "(default 0: each config's own)")
  parser.add_argument("--ais_steps", type=int, default=0, help="the GANs' eval.ais_steps (default: the config's)")
  parser.add_argument("--ais_chains", type=int, default=0, help="the GANs' eval.ais_chains (default: the config's)")
  parser.add_argument("--sampling_speed", action=argparse.BooleanOptionalAction, default=True,
                      help="time diffusion's DDIM steps / DDPM and the image-GPT's cached / uncached sampler "
                      "on the trained models (not with --smoke)")
  parser.add_argument("--speed_images", type=int, default=16, help="images per timed sampling call")
  parser.add_argument("--parallel", type=int, default=1,
                      help="entries trained at once, each pinned to its own equal share of the cores "
                      "(2 on a 2-core machine: one core per run, twice the throughput)")
  parser.add_argument("--eval_images", type=int, default=0,
                      help="train.eval_examples of every entry: test images of the evaluations during training "
                      "(default 0: each config's own)")
  parser.add_argument("--num_samples", type=int, default=None, help="N of FID / KID (default 10000; 32 with --smoke)")
  parser.add_argument("--dataset", default="", help="data.name for every run (default: each config's own)")
  parser.add_argument("--only", default="", help="comma-separated entry names (default: all)")
  parser.add_argument("--smoke", action="store_true", help="every smoke config, a tiny budget and N")
  parser.add_argument("--in_process", action="store_true", help="train in this process (tests), not subprocesses")
  args = parser.parse_args(argv)
  args.budget_minutes = args.budget_minutes if args.budget_minutes is not None else (1.0 if args.smoke else 20.0)
  args.num_samples = args.num_samples or (32 if args.smoke else 10000)
  root = os.path.abspath(args.root)
  out = args.out or (os.path.join(root, "results") if args.smoke else os.path.join(REPO, "experiments", "results",
                                                                                     "compare"))
  names = [n for n in args.only.split(",") if n]
  unknown = sorted(set(names) - {e.name for e in ENTRIES})
  if unknown:
    raise SystemExit(f"error: unknown entries {unknown}; choose from {[e.name for e in ENTRIES]}")
  entries = [e for e in ENTRIES if not names or e.name in names]
  if args.judges_from:
    check_judges(judge_root(args, root))
  else:
    for judge in JUDGES:
      train_entry(judge, root, args)
  failed = []
  free = queue.Queue()
  for cores in (core_sets(args.parallel) if args.parallel > 1 and not args.in_process else [()]):
    free.put(cores)

  def run(entry):  # -> its row, or None if its run failed
    cores = free.get()
    try:
      return row(entry, root, train_entry(entry, root, args, cores), args.smoke)
    except (subprocess.CalledProcessError, KeyError) as e:
      if args.in_process:
        raise
      failed.append(entry.name)
      print(f"{entry.name}: FAILED ({e}); see {os.path.join(root, entry.name, 'compare.log')}", flush=True)
      return None
    finally:
      free.put(cores)

  with concurrent.futures.ThreadPoolExecutor(max_workers=free.qsize()) as pool:
    rows = [r for r in pool.map(run, entries) if r is not None]   # in ENTRIES order
  speeds = sampling_speeds(rows, args) if args.sampling_speed and not args.smoke else []
  paths = write_outputs(rows, out, root, args, speeds) if rows else {}
  for name, path in paths.items():
    print(f"{name}: {path}")
  if failed:
    raise SystemExit(f"error: {', '.join(failed)} failed; rerun the same command to resume them")
  return {"rows": rows, "paths": paths}


if __name__ == "__main__":
  main()
