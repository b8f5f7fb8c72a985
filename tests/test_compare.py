"""The whole comparison in smoke form: judges, every smoke config, one evaluation, table, plots, notebook.

`python -m experiments.comparison.compare --smoke` in this process (each run is an ordinary
loop run), then: one row per entry, every cell of the table filled, every number
finite; the agreement cells say 'n/a' exactly where they do not apply (unconditional
samples: no agreement; label models: class agreement only); a rerun with unchanged
settings trains nothing; notebooks/compare.ipynb shows the files.
"""
import csv
import json
import math
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from experiments.comparison import compare
from tests.conftest import REPO, load_config

ALWAYS = ("bpd", "bpd_stderr", "test_images", "likelihood_seconds_per_image", "fid", "fid_floor", "kid", "kid_std",
          "kid_floor", "parameters", "steps", "train_minutes", "train_images_per_s", "sample_images_per_s")
CONDITIONAL = ("class_agreement", "class_agreement_real")
CAPTION = ("attribute_agreement", "attribute_agreement_real", "clip_cosine", "clip_cosine_real")
AGREEMENT_COLUMNS = (8, 9, 10)  # class, attribute, CLIP columns of compare.md


# All twelve entries take ~3 min on a loaded 2-core machine; this subset covers every condition
# (none, label, caption) and the kinds of number that need their own handling (exact; an ELBO with
# an extra IWAE bound; AIS's stochastic bound), in a fraction of that (the suite's time budget);
# every config's own smoke run is in test_configs_e2e. `python -m experiments.comparison.compare --smoke`
# runs all twelve.
SUBSET = ("independent", "vae", "gan", "igpt_caption")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  root = tmp_path_factory.mktemp("compare")
  result = compare.main(["--smoke", "--in_process", f"--root={root}", f"--only={','.join(SUBSET)}"])
  return root, result


@pytest.mark.slow
def test_every_row_is_filled_and_finite(smoke):
  root, result = smoke
  with open(os.path.join(root, "results", "compare.json")) as f:
    rows = json.load(f)["rows"]
  assert [r["name"] for r in rows] == list(SUBSET)
  for r in rows:
    applies = ALWAYS + (CONDITIONAL if r["samples_conditioned_on"] != "none" else ()) + (
        CAPTION if r["samples_conditioned_on"] == "caption" else ())
    for key in applies:
      assert isinstance(r[key], (int, float)) and math.isfinite(r[key]), (r["name"], key, r[key])
    for key in set(CONDITIONAL + CAPTION) - set(applies):
      assert r[key] is None, (r["name"], key)
    assert r["attribute_agreement_real"] in (None, 1.0), r["name"]   # captions name measured attributes
    assert r["likelihood_type"] and r["condition"] in ("none", "label", "caption")
    assert r["num_samples"] == 32 and r["parameters"] > 0
  kinds = {r["name"]: r["likelihood_type"] for r in rows}
  assert kinds["igpt_caption"] == "exact"
  assert kinds["vae"] == "upper bound" and kinds["gan"].startswith("stochastic upper bound")
  assert [r["name"] for r in rows if r["samples_conditioned_on"] == "caption"] == ["igpt_caption"]
  assert [r["name"] for r in rows if r["samples_conditioned_on"] == "label"] == ["gan"]


@pytest.mark.slow
def test_the_table_has_no_empty_cell(smoke):
  root, _ = smoke
  with open(os.path.join(root, "results", "compare.md")) as f:
    lines = [line for line in f.read().splitlines() if line.startswith("|")]
  width = lines[0].count("|")
  assert len(lines) == 2 + len(SUBSET)
  for line in lines[2:]:
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert line.count("|") == width and all(cells), line
    assert not any(re.search(r"\b(nan|inf)\b", c.lower()) for c in cells), line
    assert all(c != "n/a" for i, c in enumerate(cells) if i not in AGREEMENT_COLUMNS), line
  with open(os.path.join(root, "results", "compare.csv")) as f:
    assert len(list(csv.DictReader(f))) == len(SUBSET)
  for name in ("bpd_vs_time", "fid_vs_sampling", "samples", "captions"):
    assert os.path.getsize(os.path.join(root, "results", f"{name}.png")) > 0, name


@pytest.mark.slow
def test_a_rerun_with_the_same_settings_trains_nothing(smoke, capsys):
  root, _ = smoke
  compare.main(["--smoke", "--in_process", f"--root={root}", "--only=independent", f"--out={root}/again"])
  out = capsys.readouterr().out
  assert "independent: done with these settings" in out and "classifier: done with these settings" in out
  assert "genfam.main" not in out


@pytest.mark.slow
def test_the_notebook_shows_the_files(smoke, monkeypatch):
  root, _ = smoke
  monkeypatch.setenv("GENFAM_COMPARE_DIR", str(root / "results"))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  nb = nbformat.read(os.path.join(REPO, "notebooks", "compare.ipynb"), as_version=4)
  NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
  outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
  assert f"{len(SUBSET)} families" in outputs and "(smoke)" in outputs
  images = sum("image/png" in o.get("data", {}) for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
  assert images == 4


def _args(*argv):
  """The parsed flags of experiments.comparison.compare that overrides_for reads ('--key=value' strings)."""
  ns = {"dataset": "", "smoke": False, "budget_minutes": 4.0, "judge_budget_minutes": 30.0, "num_samples": 500,
        "eval_images": 0, "parallel": 1,
        "evals_per_budget": 4, "test_images": 0, "ais_steps": 0, "ais_chains": 0, "judges_from": ""}
  for a in argv:
    key, _, value = a.lstrip("-").partition("=")
    ns[key] = type(ns[key])(value)
  return type("Args", (), ns)


def test_the_run_settings_put_every_likelihood_on_the_same_images_and_judges():
  by_name = {e.name: e for e in compare.ENTRIES}
  args = _args("--test_images=25", "--ais_steps=50", "--ais_chains=2", "--judges_from=/somewhere",
                "--eval_images=8")
  vae, gan = compare.overrides_for(by_name["vae"], args, "/r"), compare.overrides_for(by_name["gan_caption"], args, "/r")
  assert vae["eval.num_examples"] == gan["eval.num_examples"] == vae["eval.extra_num_examples"] == 25
  assert gan["eval.extra_num_examples"] == 25 and vae["train.eval_examples"] == gan["train.eval_examples"] == 8
  assert vae["eval.every_seconds"] == 60.0 and vae["train.max_train_seconds"] == 240.0
  assert vae["eval.sample_batch_size"] == 125   # N = 500 in four draws: the speed leaves the compiling one out
  assert "eval.ais_steps" not in vae and (gan["eval.ais_steps"], gan["eval.ais_chains"]) == (50, 2)
  assert vae["eval.classifier_workdir"] == "/somewhere/classifier"
  assert gan["model.text_encoder_workdir"] == gan["eval.clip_workdir"] == "/somewhere/clip"
  own = compare.overrides_for(by_name["vae"], _args(), "/r")
  assert "eval.num_examples" not in own and own["eval.clip_workdir"] == "/r/clip"


def test_judges_from_a_folder_without_them_is_a_one_line_error(tmp_path):
  with pytest.raises(SystemExit, match=r"has no finished classifier run .*or leave --judges_from out"):
    compare.main([f"--root={tmp_path / 'r'}", f"--judges_from={tmp_path}", "--only=vae"])


@pytest.mark.slow
def test_sampling_speed_times_ddim_steps_ddpm_and_the_cached_igpt_on_the_trained_models(tmp_path):
  from genfam.loop import train
  rows = []
  for name, family in (("ddpm", "diffusion"), ("igpt", "igpt")):
    config = load_config(name)
    config.train.progress = False
    train.train_and_evaluate(config, str(tmp_path / name))
    rows.append({"name": name, "family": family, "condition": "none", "workdir": str(tmp_path / name)})
  rows.append({"name": "vae", "family": "vae", "condition": "none", "workdir": "/not/run"})   # no experiment
  speeds = compare.sampling_speeds(rows, type("Args", (), {"speed_images": 2}))
  T, D = load_config("ddpm").diffusion.num_steps, 8 * 8
  assert [(s["name"], s["sampler"], s["steps"]) for s in speeds] == [
      ("ddpm", "ddpm", T), ("ddpm", "ddim", 10), ("igpt", "cached", D), ("igpt", "uncached", D)]
  assert all(s["images_per_s"] > 0 and math.isfinite(s["seconds_per_image"]) for s in speeds)
  table = compare.speed_markdown(speeds)
  assert table.count("\n| ddpm |") == 2 and "| igpt | uncached | 64 | 2 |" in table


def test_parallel_runs_get_disjoint_equal_core_sets():
  import os
  cores = sorted(os.sched_getaffinity(0))
  sets = compare.core_sets(len(cores))
  assert sorted(c for s in sets for c in s) == cores and all(len(s) == 1 for s in sets)
  assert compare.core_sets(1) == [tuple(cores)]
  with pytest.raises(SystemExit, match="--parallel"):
    compare.core_sets(len(cores) + 1)


def test_a_two_stage_row_splits_its_budget_and_its_prior_reads_its_autoencoder():
  args = _args()
  two_stage = [e for e in compare.ENTRIES if e.stage1 is not None]
  assert {e.name for e in two_stage} >= {"code_prior_caption", "latent_diffusion_caption"}
  for entry in two_stage:
    prior, stage1 = compare.overrides_for(entry, args, "/r"), compare.stage1_overrides(entry.stage1, args)
    assert prior["model.autoencoder_workdir"] == f"/r/{entry.stage1.name}"
    assert prior["train.max_train_seconds"] + stage1["train.max_train_seconds"] == 240.0
    assert "eval.sample_quality" not in stage1 and "model.autoencoder_workdir" not in stage1
  both = compare.with_stage1({"step": 7, "train_seconds": 100.0}, {"step": 3, "train_seconds": 20.0})
  assert both == {"step": 7, "train_seconds": 120.0, "stage1": {"step": 3, "train_seconds": 20.0}}


@pytest.mark.slow
def test_a_two_stage_row_trains_its_autoencoder_then_its_prior(smoke):
  root, _ = smoke   # (the judges of the smoke comparison)
  rows = compare.main(["--smoke", "--in_process", f"--root={root}", "--only=code_prior", f"--out={root}/two_stage"])["rows"]
  stage1 = json.load(open(root / "vqvae" / "results.json"))
  prior = json.load(open(root / "code_prior" / "results.json"))
  assert json.load(open(root / "code_prior" / "config.json"))["model"]["autoencoder_workdir"] == str(root / "vqvae")
  [row] = rows
  assert row["family"] == "code_prior" and row["likelihood_type"] == "upper bound"
  assert row["train_minutes"] == pytest.approx((stage1["train_seconds"] + prior["train_seconds"]) / 60)
