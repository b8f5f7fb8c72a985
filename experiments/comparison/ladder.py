"""The budget ladder: every row of the comparison trained once and judged at 4, 16 and 64 minutes of training.

  python -m experiments.comparison.ladder --root=/work/ladder                    # runs or continues the whole ladder
  python -m experiments.comparison.ladder --root=/work/ladder --stage=train --core=0 &   # train on core 0 ...
  python -m experiments.comparison.ladder --root=/work/ladder --stage=judge --core=1     # ... judge on core 1 meanwhile
  python -m experiments.comparison.ladder --smoke --root=/tmp/ladder-smoke --rungs=0.02,0.04   # every smoke config, seconds

Every row of `experiments.comparison.compare.ENTRIES` (each family, its caption-conditional
variants) trains ONE run, ROOT/runs/<row>, pinned to one core (taskset), with
train.clock = 'cpu': a rung of r minutes is r minutes of the core's time given to
the training loop (periodic evaluations excluded, compilation and checkpoint saves
included), which other work on a busy machine does not shrink. At each rung the run
stops (train.max_train_seconds), its checkpoint is copied to ROOT/rungs/<r>min/<row>
(kept), and the run continues from it to the next rung. A rung's copy is then judged
by `python -m genfam.main --mode=eval` with the comparison's settings (`judge_overrides`):
  - likelihood on the same first --test_images (1000) test images for every row, with
    its kind, condition and standard error (the GANs' AIS on the first --ais_images;
    diffusion: the importance-sampled estimate of the full bound on all of them and
    the full 1000-term bound on the first --full_bound_images beside it);
  - FID and KID (standardized features) between --num_samples (2000) samples and the
    whole test split, beside the floor (as many train images against the same split);
  - text agreement on the first --condition_images (1000) test captions / labels, beside
    the real images' ceiling; sampling images/s.
A judged rung writes OUT/<r>min/<row>.json (OUT: experiments/results/ladder) at once,
then the rung's tables (OUT/<r>min/ladder.md, .csv, .json; the picture of its samples),
the table across rungs with each rung's leaders (OUT/trend.md) and the cross-rung figures (OUT/bpd_vs_minutes.png, fid_vs_minutes.png,
agreement_vs_minutes.png) are redrawn from every judged file, so each can be committed
as it comes. Rerunning the command skips what is judged, resumes a stopped run from its
last checkpoint (SIGTERM saves one), and judges what is not. docs/comparison.md says
what the tables show.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from experiments.comparison import compare

REPO = compare.REPO
RUNGS = "4,16,64"
FAR_AWAY_STEPS = compare.FAR_AWAY_STEPS


def rung_label(minutes: float) -> str:
  return f"{minutes:g}min"


def train_overrides(entry: compare.Entry, args, minutes: float, judges: str, root: str = "") -> dict:
  """The --config.<key>=<value> of a row's training run up to a rung of `minutes` (its budget_share of
  them: a two-stage row's prior, whose model.autoencoder_workdir is the rung's kept stage-1 copy under
  ROOT, or that stage 1 itself)."""
  out = dict(entry.overrides)
  out.update({"train.progress": False, "train.clock": args.clock, "train.final_eval": False,
              "train.max_train_seconds": 60.0 * minutes * entry.budget_share, "train.eval_every": 0,
              "eval.every_seconds": 0.0, "train.sample_every": 0})
  if entry.stage1 is not None:
    out["model.autoencoder_workdir"] = os.path.join(root, "rungs", rung_label(minutes), entry.stage1.name)
  if not args.smoke:  # the budget decides where a run stops; smoke configs keep their few steps
    out["train.num_steps"] = FAR_AWAY_STEPS
    out["train.checkpoint_every"] = args.checkpoint_every
  else:
    out["train.checkpoint_every"] = 0
  if args.dataset:
    out["data.name"] = args.dataset
  if entry.text_encoder:
    out["model.text_encoder_workdir"] = os.path.join(judges, "clip")
  return out


def judge_overrides(entry: compare.Entry, args, judges: str) -> dict:
  """The --config.<key>=<value> that judge a rung's checkpoint (beside its training overrides)."""
  config = compare._config(entry, args.smoke)
  out = {"eval.num_examples": args.test_images, "eval.sample_quality": True,
         "eval.classifier_workdir": os.path.join(judges, "classifier"), "eval.clip_workdir": os.path.join(judges, "clip"),
         "eval.num_samples": args.num_samples, "eval.reference_images": args.reference_images,
         "eval.condition_images": args.condition_images,
         "eval.sample_batch_size": max(2, -(-args.num_samples // 4)),   # four draws: the first compiles
         "eval.clock": args.clock}   # sampling speed on the runs' clock (cpu: the pinned core's seconds)
  if "extra_num_examples" in config.eval:
    out["eval.extra_num_examples"] = args.test_images
  if config.eval.get("iwae_k", 0):  # IWAE-k costs k passes per image: on the first --extra_images
    out["eval.extra_num_examples"] = min(args.extra_images, args.test_images)
  if config.family == "gan":       # AIS: on the first --ais_images
    out["eval.num_examples"] = min(args.ais_images, args.test_images)
    out.update({k: v for k, v in (("eval.ais_steps", args.ais_steps), ("eval.ais_chains", args.ais_chains)) if v})
  if config.family == "diffusion" and "is_timesteps" in config.eval:
    # the importance-sampled estimate of the full bound on every test image; the full bound on the first few
    out["eval.extra_num_examples"] = min(args.full_bound_images, args.test_images)
  if args.smoke:
    out["eval.sample_batch_size"] = int(config.sample.num)
  return out


def command(entry, workdir, overrides: dict, args, mode: str = "train") -> list[str]:
  cmd = compare.command(entry, workdir, overrides, args.smoke)
  return cmd + ([f"--mode={mode}"] if mode != "train" else [])


def _genfam(entry, workdir: str, overrides: dict, args, log_path: str, mode: str = "train") -> list[str]:
  """`python -m genfam.main --config=<entry> --workdir=WORKDIR --config.<k>=<v>.. [--mode=eval]`, pinned to
  args.core, its output appended to log_path; with --in_process (tests) the same config and mode through
  genfam.loop.train in this process. -> the command."""
  cmd = command(entry, workdir, overrides, args, mode)
  if args.in_process:
    from genfam.loop import train
    from genfam.settings import config_files
    config = config_files.apply_overrides(compare._config(entry, args.smoke), overrides)
    train.evaluate_workdir(config, workdir) if mode == "eval" else train.train_and_evaluate(config, workdir)
    return cmd
  pin = ["taskset", "-c", args.core] if args.core else []
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "a") as log:
    log.write(f"$ {' '.join(pin + cmd)}\n")
    log.flush()
    subprocess.run(pin + cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
  return cmd


def _read(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def snapshot(workdir: str, dest: str, stage1: dict | None = None) -> dict:
  """Copies a run's config, training results and latest checkpoint into `dest` (a workdir that
  --mode=eval can judge); -> the training results (step, train_seconds, train_images_per_s; a
  two-stage row's with its kept `stage1` results: train_seconds of both stages)."""
  results = _read(os.path.join(workdir, "results.json"))
  if stage1 is not None:
    results = compare.with_stage1(results, stage1)
  step = int(results["step"])
  tmp = dest + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(os.path.join(tmp, "checkpoints"))
  shutil.copytree(os.path.join(workdir, "checkpoints", str(step)), os.path.join(tmp, "checkpoints", str(step)))
  for name in ("config.json", "config_history.jsonl", "commands.txt", "ladder_machines.json"):
    if os.path.exists(os.path.join(workdir, name)):
      shutil.copy2(os.path.join(workdir, name), os.path.join(tmp, name))
  with open(os.path.join(tmp, "train_results.json"), "w") as f:
    json.dump(results, f, indent=1)
  shutil.rmtree(dest, ignore_errors=True)
  os.replace(tmp, dest)   # a rung's copy appears whole or not at all
  return results


def record_machine(workdir: str, minutes: float, args) -> list:
  """Appends {'to_minutes', 'device'} to the run's ladder_machines.json: which processor trained the run
  up to each rung (CPU budgets are CPU seconds of that processor; a run continued on another machine
  says so); -> the list."""
  path = os.path.join(workdir, "ladder_machines.json")
  machines = _read(path) if os.path.exists(path) else []
  device, before = _device(args), [m["device"] for m in machines if m["to_minutes"] == minutes]
  if before and device not in before[0]:   # the rung was begun on another machine
    device = f"{before[0]}, then {device}"
  elif before:
    device = before[0]
  machines = [m for m in machines if m["to_minutes"] != minutes] + [{"to_minutes": minutes, "device": device}]
  with open(path, "w") as f:
    json.dump(machines, f, indent=1)
  return machines


def train_rung(entry, root: str, minutes: float, args, judges: str) -> str:
  """Trains (or resumes) the row's run to `minutes` and keeps that checkpoint; -> the rung's workdir.

  A two-stage row: its stage-1 run (ROOT/runs/<stage-1 name>, continued from rung to rung) trains to
  its share of `minutes` and is kept beside the row; then a prior is trained afresh on that frozen
  copy (ROOT/runs/<row>@<rung>: codes change from rung to rung, so a prior cannot be continued) for
  the rest; the kept row's train_seconds count both stages."""
  label = rung_label(minutes)
  dest = os.path.join(root, "rungs", label, entry.name)
  if os.path.exists(os.path.join(dest, "train_results.json")):
    return dest
  stage1 = None
  if entry.stage1 is not None:
    stage1 = _read(os.path.join(train_rung(entry.stage1, root, minutes, args, judges), "train_results.json"))
  workdir = os.path.join(root, "runs", entry.name if stage1 is None else f"{entry.name}@{label}")
  overrides = train_overrides(entry, args, minutes, judges, root)
  cmd = command(entry, workdir, overrides, args)
  print(f"{entry.name} @ {rung_label(minutes)}: training  $ python -m genfam.main "
        + " ".join(cmd[3:]).replace(REPO + os.sep, ""), flush=True)
  start = time.time()
  _genfam(entry, workdir, overrides, args, os.path.join(workdir, "ladder.log"))
  record_machine(workdir, minutes, args)
  results = snapshot(workdir, dest, stage1)
  print(f"{entry.name} @ {rung_label(minutes)}: step {results['step']}, {results['train_seconds'] / 60:.1f} "
        f"{results.get('train_clock', 'wall')}-minutes of training ({time.time() - start:.0f} s wall)", flush=True)
  return dest


def judged_path(out: str, minutes: float, entry) -> str:
  """OUT/<r>min/<row>.json: a rung's judged record."""
  return os.path.join(out, rung_label(minutes), f"{entry.name}.json")


def judge_rung(entry, root: str, minutes: float, args, judges: str, out: str) -> dict | None:
  """Judges a rung's checkpoint unless OUT/<r>min/<row>.json exists; -> that record, or None if the rung
  is not trained yet."""
  label = rung_label(minutes)
  record_path = judged_path(out, minutes, entry)
  if os.path.exists(record_path):
    return _read(record_path)
  dest = os.path.join(root, "rungs", label, entry.name)
  if not os.path.exists(os.path.join(dest, "train_results.json")):
    return None
  trained = _read(os.path.join(dest, "train_results.json"))
  overrides = {**train_overrides(entry, args, minutes, judges, root), **judge_overrides(entry, args, judges)}
  cmd = command(entry, dest, overrides, args, mode="eval")
  print(f"{entry.name} @ {label}: judging  $ python -m genfam.main " + " ".join(cmd[3:]).replace(REPO + os.sep, ""),
        flush=True)
  start = time.time()
  _genfam(entry, dest, overrides, args, os.path.join(dest, "judge.log"), mode="eval")
  evaluation = _read(os.path.join(dest, f"eval_step_{trained['step']}.json"))
  result = {"step": trained["step"], "train_seconds": trained["train_seconds"],
            "train_clock": trained.get("train_clock", "wall"), "train_images_per_s": trained.get("train_images_per_s"),
            "peak_rss_mib": trained.get("peak_rss_mib"), "stage1": trained.get("stage1"), "test": evaluation["test"],
            "trained_on": (_read(os.path.join(dest, "ladder_machines.json"))
                           if os.path.exists(os.path.join(dest, "ladder_machines.json")) else None),
            "sample_quality": evaluation["sample_quality"]}
  rung_root = os.path.join(root, "rungs", label)
  row = compare.row(entry, rung_root, result, args.smoke)
  record = {"rung_minutes": minutes, "row": row, "result": result, "judged_seconds": time.time() - start,
            "device": _device(args),
            "judge_command": "python -m genfam.main " + " ".join(cmd[3:]).replace(REPO + os.sep, "")}
  os.makedirs(os.path.dirname(record_path), exist_ok=True)
  with open(record_path, "w") as f:
    json.dump(record, f, indent=1, default=float)
  print(f"{entry.name} @ {label}: judged in {time.time() - start:.0f} s -> {record_path}", flush=True)
  return record


# ---------------------------------------------------------------------------------------- tables and figures

def judged(out: str, rungs: list[float]) -> dict:
  """{minutes: [record, ...]} of every judged file under OUT, rows in ENTRIES order."""
  order = {e.name: i for i, e in enumerate(compare.ENTRIES)}
  found = {}
  for minutes in rungs:
    folder = os.path.join(out, rung_label(minutes))
    if not os.path.isdir(folder):
      continue
    records = [_read(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(".json")
               and n != "ladder.json"]
    if records:
      found[minutes] = sorted(records, key=lambda r: order.get(r["row"]["name"], len(order)))
  return found


def trained_on(records: list[dict]) -> str:
  """'Trained on: ...': each row's machines rung by rung ('A to 4 min, then B to 16 min'), rows
  with the same history named together."""
  machines = {}
  for r in records:
    history = r["result"].get("trained_on") or [{"device": "not recorded (trained before the ladder recorded it)"}]
    spans = [m["device"] if len(history) == 1 else f"{m['device']} to {m['to_minutes']:g} min" for m in history]
    machines.setdefault(", then ".join(spans), []).append(r["row"]["name"])
  return "Trained on: " + "; ".join(f"{history} ({', '.join(dict.fromkeys(names))})"
                                    for history, names in machines.items()) + "."


def sampling_clock(records: list[dict]) -> str:
  """The sentence that says what each row's sampling images/s counts: wall-clock seconds (judged
  beside other work, they undercount), or the judging process's CPU seconds (eval.clock=cpu)."""
  by_clock = {}
  for r in records:
    by_clock.setdefault(r["result"]["sample_quality"].get("sample_clock", "wall"), []).append(r["row"]["name"])
  words = {"cpu": "CPU seconds of the judging process, pinned to one core (eval.clock=cpu)",
           "wall": "wall-clock seconds (lower when other work shared the core)"}
  if len(by_clock) == 1:
    return f"Sampling images/s count {words[next(iter(by_clock))]}."
  return "Sampling images/s count " + "; ".join(f"{words[k]} for {', '.join(v)}" for k, v in by_clock.items()) + "."


def write_rung(records: list[dict], minutes: float, out: str, args) -> dict:
  """OUT/<r>min/ladder.md / .csv / .json and samples.png (captions.png) of one rung."""
  folder = os.path.join(out, rung_label(minutes))
  rows = [dict(r["row"]) for r in records]
  q = records[0]["result"]["sample_quality"]
  conditions = max((r["result"]["sample_quality"].get("num_conditions") or 0) for r in records) or args.condition_images
  clock = records[0]["result"].get("train_clock", "wall")
  device = records[0].get("device", "")
  budget = ("CPU time of one pinned core in the training loop (train.clock=cpu" if clock == "cpu" else
            f"wall-clock seconds of the training loop on {device or 'the device'} (train.clock=wall")
  note = (f"{minutes:g} minutes of training per row: {budget}; compilation and checkpoints in, evaluations "
          f"out). Likelihoods on the first test "
          f"images (the 'test images' column; each row's other bounds on the images they name). FID / KID on "
          f"the domain classifier's features between {q['num_samples']} samples and the first "
          f"{q['num_reference']} test images (KID on features standardized with the first {q.get('num_kid_stats')} "
          f"train images' statistics), floor = {q['num_floor']} train images against the same test images; "
          f"conditional samples take the labels / captions of the first {conditions} "
          "test images in turn; agreement columns only for conditional samples (label: class; caption: class, "
          "attributes, CLIP), the same real test images in brackets.")
  note += " " + sampling_clock(records) + " " + trained_on(records)
  text = compare.markdown(rows, None, note=note)
  header = (f"# The budget ladder at {minutes:g} minutes of training\n\nMade by `python -m experiments.comparison.ladder "
            f"--root=ROOT` (the judge command of each row is in its JSON file beside this table).\n\n")
  with open(os.path.join(folder, "ladder.md"), "w") as f:
    f.write(header + text)
  with open(os.path.join(folder, "ladder.json"), "w") as f:
    json.dump({"rung_minutes": minutes, "rows": rows}, f, indent=1, default=float)
  import csv
  with open(os.path.join(folder, "ladder.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in rows])
  from experiments.comparison import compare_plots
  paths = {"markdown": os.path.join(folder, "ladder.md")}
  drawable = [r for r in rows if os.path.exists(os.path.join(r["workdir"], "sample_quality_samples.npz"))]
  if drawable:
    paths["samples"] = compare_plots.samples_grid(drawable, os.path.join(folder, "samples.png"))
    caption_rows = [r for r in drawable if r["samples_conditioned_on"] == "caption"]
    if caption_rows:
      grid = compare_plots.captions_grid(drawable, os.path.join(folder, "captions.png"),
                                         compare_plots._test_images(caption_rows[0]))
      if grid:
        paths["captions"] = grid
  return paths


def write_all(out: str, args) -> dict:
  """Every judged rung's tables, and the cross-rung figures."""
  from experiments.comparison import ladder_plots
  found = judged(out, args.rungs)
  paths = {}
  for minutes, records in found.items():
    paths.update({f"{rung_label(minutes)}/{k}": v for k, v in write_rung(records, minutes, out, args).items()})
  if found:
    from experiments.comparison import ladder_trend
    paths["trend"] = os.path.join(out, "trend.md")
    with open(paths["trend"], "w") as f:
      f.write("# The budget ladder across its rungs\n\nMade by `python -m experiments.comparison.ladder --root=ROOT` "
              "(each rung's full table: <r>min/ladder.md).\n\n" + ladder_trend.trend_markdown(found))
    paths.update(ladder_plots.draw_all(found, out))
  return paths


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="runs/ladder", help="runs, rung copies and judges live here (outside the clone)")
  parser.add_argument("--out", default="", help="judged files, tables, figures (default experiments/results/ladder; "
                      "ROOT/results with --smoke)")
  parser.add_argument("--rungs", default=RUNGS, help="training minutes of each rung, ascending")
  parser.add_argument("--stage", choices=("all", "train", "judge", "tables"), default="all",
                      help="train: train and keep every rung's checkpoint; judge: judge the kept rungs there are; "
                      "tables: redraw the tables and figures only; all: rung by rung, train then judge")
  parser.add_argument("--core", default="", help="the CPU core(s) to pin runs to (taskset -c; default: the last core "
                      "this process may use)")
  parser.add_argument("--judges_from", default="", help="a folder with finished classifier/ and clip/ runs "
                      "(default ROOT/judges)")
  parser.add_argument("--only", default="", help="comma-separated row names (default: all)")
  parser.add_argument("--test_images", type=int, default=1000, help="likelihood on the first N test images")
  parser.add_argument("--full_bound_images", type=int, default=100, help="diffusion: the full bound on the first N")
  parser.add_argument("--ais_images", type=int, default=100, help="GANs: AIS on the first N test images")
  parser.add_argument("--extra_images", type=int, default=100, help="VAE: IWAE on the first N test images")
  parser.add_argument("--ais_steps", type=int, default=0, help="the GANs' eval.ais_steps (default: the config's)")
  parser.add_argument("--ais_chains", type=int, default=0, help="the GANs' eval.ais_chains (default: the config's)")
  parser.add_argument("--num_samples", type=int, default=2000, help="samples for FID / KID and text agreement")
  parser.add_argument("--reference_images", type=int, default=10000, help="FID / KID reference: first N test images")
  parser.add_argument("--condition_images", type=int, default=1000, help="conditions from the first N test images")
  parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                      help="train.clock of the runs: cpu (CPU time of the pinned core) or wall (a GPU's seconds)")
  parser.add_argument("--judge_budget_minutes", type=float, default=0.0,
                      help="cap on the classifier's and CLIP's training (0: their configs' step counts)")
  parser.add_argument("--checkpoint_every", type=int, default=200, help="train.checkpoint_every of the runs")
  parser.add_argument("--dataset", default="", help="data.name for every run (default: each config's own)")
  parser.add_argument("--smoke", action="store_true", help="every smoke config and tiny judging numbers")
  parser.add_argument("--in_process", action="store_true", help="run genfam in this process (tests), unpinned")
  args = parser.parse_args(argv)
  args.rungs = sorted(float(r) for r in args.rungs.split(",") if r)
  if args.smoke:
    args.test_images, args.full_bound_images, args.ais_images, args.extra_images = 8, 4, 2, 4
    args.num_samples, args.reference_images, args.condition_images = 8, 16, 4
  root = os.path.abspath(args.root)
  out = os.path.abspath(args.out) if args.out else (
      os.path.join(root, "results") if args.smoke else os.path.join(REPO, "experiments", "results", "ladder"))
  if args.in_process:
    args.core = ""
  elif not args.core:
    args.core = str(sorted(os.sched_getaffinity(0))[-1]) if shutil.which("taskset") else ""
  judges = os.path.abspath(args.judges_from) if args.judges_from else os.path.join(root, "judges")
  names = [n for n in args.only.split(",") if n]
  unknown = sorted(set(names) - {e.name for e in compare.ENTRIES})
  if unknown:
    raise SystemExit(f"error: unknown rows {unknown}; choose from {[e.name for e in compare.ENTRIES]}")
  entries = [e for e in compare.ENTRIES if not names or e.name in names]
  if args.stage in ("all", "judge"):
    _ensure_judges(judges, args)
  failed = []
  if args.stage != "tables":
    for minutes in args.rungs:
      for entry in entries:
        try:
          if args.stage in ("all", "train"):
            if entry.text_encoder and not os.path.exists(os.path.join(judges, "clip", "results.json")):
              print(f"{entry.name} @ {rung_label(minutes)}: waits for the CLIP text encoder ({judges}/clip); "
                    "rerun when it is trained", flush=True)
              continue
            train_rung(entry, root, minutes, args, judges)
          if args.stage in ("all", "judge"):
            fresh = not os.path.exists(judged_path(out, minutes, entry))
            if judge_rung(entry, root, minutes, args, judges, out) is not None and fresh:
              write_all(out, args)   # each newly judged rung's tables at once (drawing them takes seconds)
        except subprocess.CalledProcessError as e:   # (in process, errors propagate)
          failed.append(f"{entry.name}@{rung_label(minutes)}")
          print(f"{entry.name} @ {rung_label(minutes)}: FAILED ({e}); see its ladder.log / judge.log", flush=True)
  paths = write_all(out, args)
  for name, path in paths.items():
    print(f"{name}: {path}")
  if failed:
    raise SystemExit(f"error: {', '.join(failed)} failed; rerun the same command to resume them")
  return {"paths": paths, "out": out}


def _device(args) -> str:
  """What judged a rung: the pinned CPU core's model name, or the accelerator's kind (in process)."""
  if args.in_process:
    import jax
    if jax.devices()[0].platform != "cpu":
      return f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  try:
    with open("/proc/cpuinfo") as f:
      model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "CPU")
  except OSError:
    model = "CPU"
  return f"{model}, core {args.core}" if args.core else model


def _ensure_judges(judges: str, args) -> None:
  """Trains the domain classifier and CLIP into JUDGES unless they are there (their configs' own steps)."""
  for judge in compare.JUDGES:
    workdir = os.path.join(judges, judge.name)
    if os.path.exists(os.path.join(workdir, "results.json")):
      continue
    if args.judges_from:
      compare.check_judges(judges)
    overrides = {"train.progress": False}
    if args.judge_budget_minutes > 0 and not args.smoke:
      overrides["train.max_train_seconds"] = 60.0 * args.judge_budget_minutes
    if args.dataset:
      overrides["data.name"] = args.dataset
    cmd = compare.command(judge, workdir, overrides, args.smoke)
    print(f"judge {judge.name}: $ python -m genfam.main " + " ".join(cmd[3:]).replace(REPO + os.sep, ""), flush=True)
    _genfam(judge, workdir, overrides, args, os.path.join(workdir, "ladder.log"))


if __name__ == "__main__":
  main()
