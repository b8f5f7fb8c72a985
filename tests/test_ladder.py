"""The budget ladder (experiments/comparison/ladder.py) and the loop pieces it stands on.

Fast: the CPU training clock counts the process's CPU time and not time spent waiting;
train.final_eval=False ends a run at its checkpoint, which --mode=eval then judges; the
judging settings put every row on the same test images. Slow: the ladder in smoke form,
in this process, over two rungs: every rung of every row is kept and judged, tables and
figures are written, and a rerun trains and judges nothing.
"""
import argparse
import json
import os
import time

import pytest

from experiments.comparison import compare, ladder
from genfam.evaluation import evaluate
from genfam.loop import cadence, train
from tests.conftest import load_config


def test_the_cpu_clock_counts_cpu_time_and_not_waiting():
  wall = cadence.TrainingClock(now=cadence.clock_source("wall"))
  cpu = cadence.TrainingClock(now=cadence.clock_source("cpu"))
  time.sleep(0.3)
  assert wall.seconds() >= 0.3 and cpu.seconds() < 0.1
  busy, start = 0, time.process_time()
  while time.process_time() - start < 0.2:
    busy += 1
  assert cpu.seconds() >= 0.2
  with pytest.raises(ValueError, match="train.clock"):
    cadence.clock_source("gpu")


def test_a_run_without_its_final_evaluation_ends_at_its_checkpoint_for_eval_mode(tmp_path):
  config = load_config("independent")
  config.train.progress, config.train.num_steps, config.train.final_eval = False, 3, False
  config.train.clock = "cpu"
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["step"] == 3 and summary["test"] == {} and summary["train_clock"] == "cpu"
  assert not os.path.exists(tmp_path / "samples.png")
  judged = train.evaluate_workdir(config, str(tmp_path))
  assert judged["step"] == 3 and judged["test"]["exact"]["bpd"] > 0


def _args(**kw):
  base = dict(smoke=False, test_images=1000, full_bound_images=100, ais_images=100, extra_images=100, ais_steps=0,
              ais_chains=0, num_samples=2000, reference_images=10000, condition_images=1000, checkpoint_every=200,
              dataset="", in_process=False, core="", clock="cpu", judge_budget_minutes=0.0)
  base.update(kw)
  return argparse.Namespace(**base)


def test_the_judging_puts_every_row_on_the_same_images_and_samples():
  args = _args()
  for entry in compare.ENTRIES:
    judge = ladder.judge_overrides(entry, args, "/judges")
    train_keys = ladder.train_overrides(entry, args, 16, "/judges", "/root")
    assert train_keys["train.clock"] == "cpu" and train_keys["train.max_train_seconds"] == 960.0 * entry.budget_share
    if entry.stage1 is not None:   # a two-stage row: both stages share the rung's budget; the prior reads the kept stage 1
      assert entry.budget_share + entry.stage1.budget_share == 1.0
      assert train_keys["model.autoencoder_workdir"] == f"/root/rungs/16min/{entry.stage1.name}"
      stage1_keys = ladder.train_overrides(entry.stage1, args, 16, "/judges", "/root")
      assert stage1_keys["train.max_train_seconds"] == 960.0 * entry.stage1.budget_share
    assert train_keys["train.final_eval"] is False
    assert judge["eval.num_samples"] == 2000 and judge["eval.reference_images"] == 10000
    assert judge["eval.condition_images"] == 1000
    config = compare._config(entry, False)
    want = 100 if config.family == "gan" else 1000     # AIS: on the first 100 of the same images
    assert judge["eval.num_examples"] == want, entry.name
    if entry.text_encoder:
      assert train_keys["model.text_encoder_workdir"] == "/judges/clip"


SUBSET = ("gan_caption",   # a caption row: the frozen text encoder, AIS, every agreement column
          "code_prior")    # a two-stage row: its autoencoder kept beside it, a prior per rung


def test_each_rung_records_the_processor_that_trained_it(tmp_path, monkeypatch):
  args = argparse.Namespace(in_process=False, core="0")
  monkeypatch.setattr(ladder, "_device", lambda a: "CPU A, core 0")
  assert ladder.record_machine(str(tmp_path), 4.0, args) == [{"to_minutes": 4.0, "device": "CPU A, core 0"}]
  assert ladder.record_machine(str(tmp_path), 4.0, args) == [{"to_minutes": 4.0, "device": "CPU A, core 0"}]
  monkeypatch.setattr(ladder, "_device", lambda a: "CPU B, core 1")   # the rung is finished elsewhere
  assert ladder.record_machine(str(tmp_path), 4.0, args)[-1]["device"] == "CPU A, core 0, then CPU B, core 1"
  machines = ladder.record_machine(str(tmp_path), 16.0, args)
  assert [m["to_minutes"] for m in machines] == [4.0, 16.0] and machines[-1]["device"] == "CPU B, core 1"
  assert json.load(open(tmp_path / "ladder_machines.json")) == machines


def test_the_table_names_each_rows_machines_rung_by_rung():
  def record(name, *history):
    return {"row": {"name": name}, "result": {"trained_on": [{"to_minutes": m, "device": d} for m, d in history]}}
  records = [record("a", (4.0, "X"), (16.0, "Y")), record("b", (4.0, "X, then Y"), (16.0, "Y")),
             record("c", (4.0, "X"), (16.0, "Y")), record("d", (4.0, "Y")), {"row": {"name": "e"}, "result": {}}]
  assert ladder.trained_on(records) == (
      "Trained on: X to 4 min, then Y to 16 min (a, c); X, then Y to 4 min, then Y to 16 min (b); Y (d); "
      "not recorded (trained before the ladder recorded it) (e).")


def test_the_table_says_what_sampling_speed_counts():
  def record(name, clock=None):
    quality = {} if clock is None else {"sample_clock": clock}
    return {"row": {"name": name}, "result": {"sample_quality": quality}}
  assert ladder.sampling_clock([record("a", "cpu"), record("b", "cpu")]) == (
      "Sampling images/s count CPU seconds of the judging process, pinned to one core (eval.clock=cpu).")
  assert ladder.sampling_clock([record("a"), record("b", "cpu"), record("c", "wall")]) == (
      "Sampling images/s count wall-clock seconds (lower when other work shared the core) for a, c; "
      "CPU seconds of the judging process, pinned to one core (eval.clock=cpu) for b.")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  root = tmp_path_factory.mktemp("ladder")
  argv = ["--smoke", "--in_process", f"--root={root}", f"--only={','.join(SUBSET)}", "--rungs=0.005,0.01"]
  return root, argv, ladder.main(argv)


@pytest.mark.slow
def test_every_rung_of_every_row_is_kept_and_judged(smoke):
  root, _, result = smoke
  out = result["out"]
  for rung in ("0.005min", "0.01min"):
    for name in SUBSET:
      kept = root / "rungs" / rung / name
      trained = json.loads((kept / "train_results.json").read_text())
      assert trained["train_clock"] == "cpu" and os.listdir(kept / "checkpoints") == [str(trained["step"])]
      record = json.loads(open(os.path.join(out, rung, f"{name}.json")).read())
      row = record["row"]
      assert row["steps"] == trained["step"] and row["fid"] >= 0 and row["bpd"] > 0
      assert record["result"]["sample_quality"]["num_reference"] == 16
      assert record["result"]["sample_quality"]["sample_clock"] == "cpu"
    assert os.path.exists(os.path.join(out, rung, "ladder.md"))
  steps = [json.loads((root / "rungs" / r / SUBSET[0] / "train_results.json").read_text())["step"]
           for r in ("0.005min", "0.01min")]
  assert steps[1] >= steps[0]
  for figure in ("bpd_vs_minutes.png", "fid_vs_minutes.png", "agreement_vs_minutes.png"):
    assert os.path.exists(os.path.join(out, figure)), figure
  table = open(os.path.join(out, "0.01min", "ladder.md")).read()
  assert "gan_caption" in table and "train.clock=cpu" in table and "Trained on: " in table
  trend = open(os.path.join(out, "trend.md")).read()   # both rows at both rungs, and each rung's leaders
  assert "| gan_caption | ais | caption |" in trend and "| code_prior | elbo | none |" in trend
  assert "| 0.005 min | 2 |" in trend and "| 0.01 min | 2 |" in trend
  record = json.loads(open(os.path.join(out, "0.01min", f"{SUBSET[0]}.json")).read())
  assert [m["to_minutes"] for m in record["result"]["trained_on"]] == [0.005, 0.01]
  for rung in ("0.005min", "0.01min"):   # the two-stage row: stage 1 continued, kept, and counted in the budget
    kept = root / "rungs" / rung / "code_prior"
    stage1 = json.loads((root / "rungs" / rung / "vqvae" / "train_results.json").read_text())
    trained = json.loads((kept / "train_results.json").read_text())
    assert trained["stage1"] == {"step": stage1["step"], "train_seconds": stage1["train_seconds"]}
    prior = json.loads((root / "runs" / f"code_prior@{rung}" / "results.json").read_text())
    assert trained["train_seconds"] == pytest.approx(prior["train_seconds"] + stage1["train_seconds"])
    config = json.loads((kept / "config.json").read_text())
    assert config["model"]["autoencoder_workdir"] == str(root / "rungs" / rung / "vqvae")


@pytest.mark.slow
def test_a_rerun_trains_and_judges_nothing(smoke, capsys):
  root, argv, result = smoke
  record = os.path.join(result["out"], "0.01min", f"{SUBSET[0]}.json")
  before = os.path.getmtime(record)
  capsys.readouterr()
  ladder.main(argv)
  printed = capsys.readouterr().out
  assert "training" not in printed and "judging" not in printed
  assert os.path.getmtime(record) == before


@pytest.mark.slow
def test_the_gpu_ladder_script_runs_on_the_cpu_with_tiny_budgets(tmp_path):
  """scripts/gpu_ladder.sh end to end (one process, wall clock) on the smoke configs of one row: judged
  rungs, their tables, the device named, and benchmark_speed's matmul fractions."""
  import subprocess
  import sys
  from tests.conftest import REPO
  env = dict(os.environ, SMOKE="1", ONLY="independent", BENCH_STEPS="2", PYTHON=sys.executable)
  done = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu_ladder.sh"), str(tmp_path), "0.005,0.01"],
                        env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  results = [p for p in tmp_path.iterdir() if p.name.startswith("ladder-cpu")]
  assert len(results) == 1, list(tmp_path.iterdir())
  record = json.loads((results[0] / "0.01min" / "independent.json").read_text())
  assert record["result"]["train_clock"] == "wall" and record["device"]
  assert (results[0] / "0.01min" / "ladder.md").exists()
  speed = json.loads((results[0] / "benchmark_speed.json").read_text())
  assert all(row["fraction_of_matmul"] > 0 for row in speed["configs"].values())


def test_eval_mode_resumes_from_its_finished_reports_and_a_changed_config_starts_again(tmp_path, monkeypatch):
  config = load_config("independent")
  config.train.progress, config.train.num_steps, config.train.final_eval = False, 3, False
  train.train_and_evaluate(config, str(tmp_path))
  whole = train.evaluate_workdir(config, str(tmp_path))
  partial = tmp_path / "eval_step_3.partial.json"
  assert not partial.exists()
  keep = train.PartialEvaluation.keep

  def killed_after_keeping(self, part, value):   # the process dies right after its first report is kept
    keep(self, part, value)
    raise KeyboardInterrupt
  monkeypatch.setattr(train.PartialEvaluation, "keep", killed_after_keeping)
  with pytest.raises(KeyboardInterrupt):
    train.evaluate_workdir(config, str(tmp_path))
  assert json.loads(partial.read_text())["test"]["exact"]["bpd"] == whole["test"]["exact"]["bpd"]
  monkeypatch.setattr(train.PartialEvaluation, "keep", keep)
  computed = []
  report = evaluate.likelihood_report
  monkeypatch.setattr(evaluate, "likelihood_report", lambda *a, **k: computed.append(k["kind"]) or report(*a, **k))
  resumed = train.evaluate_workdir(config, str(tmp_path))
  timeless = lambda reports: {kind: {k: v for k, v in r.items() if k != "seconds"} for kind, r in reports.items()}
  assert computed == [] and timeless(resumed["test"]) == timeless(whole["test"]) and not partial.exists()
  # Kept parts of another config are not reused: the numbers would be another evaluation's.
  with pytest.raises(KeyboardInterrupt):
    monkeypatch.setattr(train.PartialEvaluation, "keep", killed_after_keeping)
    train.evaluate_workdir(config, str(tmp_path))
  monkeypatch.setattr(train.PartialEvaluation, "keep", keep)
  config.eval.num_examples = 50
  computed.clear()
  again = train.evaluate_workdir(config, str(tmp_path))
  assert computed == ["exact"] and again["test"]["exact"]["num_examples"] == 50


def _record(name, condition, bpd, kind, fid, agreement=None, samples=None):
  return {"row": {"name": name, "condition": condition, "bpd": bpd, "likelihood_kind": kind, "fid": fid,
                  "class_agreement": agreement, "samples_conditioned_on": samples or condition}}


def test_the_trend_table_reads_leaders_within_a_condition_and_marks_rows_not_yet_judged():
  from experiments.comparison import ladder_trend
  four = [_record("flow", "none", 3.9, "exact", 500.0), _record("vae", "none", 3.5, "elbo", 900.0),
          _record("gan", "label", 7.7, "ais", 240.0, 0.86), _record("prior", "caption", 3.6, "elbo", 140.0, 0.5),
          _record("gpt", "caption", 3.62, "exact", 1300.0, 0.12)]
  sixteen = [_record("flow", "none", 3.4, "exact", 600.0), _record("prior", "caption", 3.3, "elbo", 30.0, 0.78)]
  best = ladder_trend.leaders(four)
  # The -log p(x | label) of the GAN is not compared with the others' -log p(x): each condition has its own leader.
  assert best["bits/dim, -log p(x)"] == ("vae", 3.5, "elbo")
  assert best["bits/dim, -log p(x | label)"] == ("gan", 7.7, "ais")
  assert best["bits/dim, -log p(x | caption)"] == ("prior", 3.6, "elbo")
  assert best["FID"] == ("prior", 140.0, "")
  assert best["class agreement, caption-conditioned samples"] == ("prior", 0.5, "")
  assert best["class agreement, label-conditioned samples"] == ("gan", 0.86, "")
  assert "bits/dim, -log p(x | label)" not in ladder_trend.leaders(sixteen)
  text = ladder_trend.trend_markdown({4.0: four, 16.0: sixteen})
  vae_line = next(line for line in text.splitlines() if line.startswith("| vae |"))
  assert vae_line == "| vae | elbo | none | 3.500 | – | 900 | – | – | – |"
  rung_line = next(line for line in text.splitlines() if line.startswith("| 16 min |"))
  assert rung_line.startswith("| 16 min | 2 | flow 3.400 (exact) | – | prior 3.300 (elbo) | prior 30.0 | – | prior 0.780 |")
  header = next(line for line in text.splitlines() if line.startswith("| rung |"))
  assert header.count(" | ") == 7    # '|' inside -log p(x | label) is escaped, so the columns hold
