"""The diversity measure (genfam/evaluation/sample_quality.py) and the trade-off curves (experiments/comparison/tradeoff_curves.py).

Diversity: identical samples give exactly 0; the blocked Gram computation equals a brute-force
double loop over the pairs that share a condition; groups are exact labels / caption rows; the
evaluation reports it beside FID with the real images' spread. The curves (slow): every knob of
smoke workdirs (Glow, the VAE, the GAN, label diffusion with classifier-free guidance) measured into
JSON per point, the neutral point repeating the row's own evaluation, a rerun measuring nothing,
and the figures drawn.
"""
import itertools
import json
import math
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data import sources
from genfam.evaluation import sample_quality
from tests.conftest import load_config


def _brute_force(features, groups):
  distances = [np.linalg.norm(features[i] - features[j]) for i, j in itertools.combinations(range(len(features)), 2)
               if groups[i] == groups[j]]
  return (float(np.mean(distances)) if distances else math.nan), len(distances)


def test_identical_samples_have_no_diversity():
  f = np.tile(np.random.default_rng(0).normal(size=(1, 7)) * 100, (12, 1))
  assert sample_quality.pairwise_diversity(f, np.zeros(12, int)) == (0.0, 66)
  two = np.concatenate([f[:6], f[:6] + 5.0])     # two conditions, each with identical samples
  assert sample_quality.pairwise_diversity(two, np.repeat([0, 1], 6)) == (0.0, 30)


@pytest.mark.parametrize("block", [1, 3, 1024])
def test_pairwise_diversity_is_the_brute_force_mean_over_pairs_sharing_a_condition(block):
  rng = np.random.default_rng(1)
  features, groups = rng.normal(size=(11, 5)) * 3 + 10, rng.integers(0, 3, 11)
  groups[10] = 7                                   # a condition with one sample: no pair
  got = sample_quality.pairwise_diversity(features, groups, block=block)
  want = _brute_force(features, groups)
  assert got[1] == want[1] and got[0] == pytest.approx(want[0], rel=1e-12)
  assert math.isnan(sample_quality.pairwise_diversity(features[:3], np.arange(3))[0])


def test_groups_are_exact_conditions():
  np.testing.assert_array_equal(sample_quality.condition_groups(None, 4), [0, 0, 0, 0])
  labels = sample_quality.condition_groups(np.array([3, 1, 3, 2]), 4)
  assert labels[0] == labels[2] and len(set(labels)) == 3
  tokens = np.array([[5, 6, 0], [5, 6, 0], [5, 7, 0], [6, 5, 0]])
  groups = sample_quality.condition_groups(tokens, 4)
  assert groups[0] == groups[1] and len(set(groups)) == 3


def test_the_evaluation_reports_diversity_beside_fid():
  """Stand-in judges (features = pixels): a label sampler that draws one image per label has
  diversity 0; one that draws test images has the real spread of those images by label."""
  data = sources.load(load_config("independent").data)
  test, spec = data.sources["test"], data.spec
  ref = sample_quality.reference(test, 60)
  judges = sample_quality.Judges(types.SimpleNamespace(params=None, functions={
      "features": lambda params, x: jnp.asarray(x, jnp.float32).reshape(len(x), -1),
      "predict": lambda params, x: {"class": jnp.zeros((len(x),), jnp.int32)}}), None)

  def one_per_label(params, rng, n, labels):
    return np.stack([ref["image"][int(np.argmax(ref["label"] == y))] for y in labels])

  def the_test_images(params, rng, n, labels):
    return ref["image"][:n]

  common = dict(condition="label", num_samples=60, sample_batch_size=60, batch_size=60, kid_subsets=2,
                kid_subset_size=10, reference_images=60, kid_stats_images=100)
  constant = sample_quality.evaluate(one_per_label, None, test, data.sources["train"], spec, jax.random.PRNGKey(0),
                                     judges, **common)
  assert constant["diversity"] == 0.0 and "fid" in constant
  real = sample_quality.evaluate(the_test_images, None, test, data.sources["train"], spec, jax.random.PRNGKey(0),
                                 judges, **common)
  want = _brute_force(ref["image"].reshape(60, -1).astype(np.float64), ref["label"])
  assert real["diversity_pairs"] == want[1]
  assert real["diversity"] == pytest.approx(want[0], rel=1e-9) == real["diversity_real"]
  assert "diversity" in sample_quality.describe(real)


def test_fidelity_per_unit_of_fid_is_the_slope_from_the_model_as_trained_to_its_most_faithful_point():
  from experiments.comparison import tradeoff_curves
  def point(form, value, clip, fid, neutral=False):
    return {"value": value, "form": form, "neutral": neutral, "sample_quality": {"clip_cosine": clip, "fid": fid}}
  curves = {("ddpm_caption", "clip"): [point("clip", 0, 0.20, 10.0, True), point("clip", 2, 0.26, 13.0),
                                       point("clip", 8, 0.25, 30.0)],
            ("gan_caption", "truncation"): [point("truncation", 0.5, 0.10, 5.0),
                                            point("truncation", 0, 0.10, 6.0, True)]}
  rows = tradeoff_curves.fidelity_per_fid(curves, "clip_cosine").splitlines()[2:]
  assert rows[0].endswith("| 2: 0.260 / 13.00 | 0.02 |")          # (0.26 - 0.20) / (13 - 10)
  assert rows[1].endswith("| off: 0.100 / 6.00 | none gained |")  # a tie keeps the model as trained


@pytest.mark.parametrize("config, forms", [
    (("glow", "smoke"), ["temperature"]), (("igpt", "smoke"), ["temperature"]),
    (("code_prior", "smoke"), ["temperature"]), (("gan", "smoke"), ["truncation"]), (("vae", "smoke"), ["truncation"]),
    (("latent_diffusion", "caption_smoke"), ["free"]), (("latent_diffusion", "smoke"), []),
    (("ddpm", "smoke"), ["free", "classifier", "clip"]), (("ddpm", "caption_smoke"), ["free", "clip"])])
def test_each_family_gets_its_knobs(config, forms):
  """Two-stage families included; classifier-free guidance only for a model trained with a null condition
  (the unconditional latent diffusion has no knob), classifier guidance never for a caption model."""
  from experiments.comparison import tradeoff_curves
  guides = {("*", "classifier"): "/c", ("*", "clip"): "/k"}
  got = tradeoff_curves.forms_of(load_config(*config), guides, "row")
  assert [form.name for form, _ in got] == forms
  assert all(guide == {"classifier": "/c", "clip": "/k"}.get(form.guide, "") for form, guide in got)


# ---------------------------------------------------------------------------------------------- the curves (slow)

ROWS = ("glow", "vae", "gan", "ddpm")      # a knob of every kind: temperature, truncation, guidance


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
  """Smoke workdirs and judges trained by the comparison's smoke run, then every knob swept on them
  at two values, with the sample counts of that run's own evaluation (so the neutral points repeat it)."""
  from experiments.comparison import compare, tradeoff_curves
  root, out = tmp_path_factory.mktemp("rows"), tmp_path_factory.mktemp("tradeoff")
  compare.main(["--smoke", "--in_process", f"--root={root}", f"--only={','.join(ROWS)}", "--no-sampling_speed"])
  argv = [f"--workdirs={root}", f"--judges={root}", f"--out={out}", "--num_samples=32", "--reference_images=32",
          "--condition_images=32", "--values=temperature=0.5,1", "--values=truncation=0.5,0", "--values=free=0,1,4"]
  paths = tradeoff_curves.main(argv)
  return root, out, argv, paths


@pytest.mark.slow
def test_every_knob_is_measured_into_a_file_per_point(curves):
  root, out, _, paths = curves
  want = {"glow": ("temperature", ("0.5", "1")), "vae": ("truncation", ("0.5", "off")),
          "gan": ("truncation", ("0.5", "off")),
          "ddpm": ("free", ("0", "1", "4"))}
  for row, (form, values) in want.items():
    assert sorted(os.listdir(os.path.join(out, row))) == sorted(f"{form}_{v}.{e}" for v in values for e in ("json", "png"))
    for v in values:
      with open(os.path.join(out, row, f"{form}_{v}.json")) as f:
        record = json.load(f)
      q = record["sample_quality"]
      assert math.isfinite(q["fid"]) and math.isfinite(q["diversity"]) and q["num_samples"] == 32
      assert record["neutral"] == (v in ("1", "off")) and record["step"] > 0
      assert ("class_agreement" in q) == (row in ("gan", "ddpm"))
  for name in ("class_agreement_vs_fid.png", "diversity_vs_fid.png", "tradeoff.md"):
    assert os.path.join(out, name) in paths and os.path.getsize(os.path.join(out, name)) > 0


@pytest.mark.slow
def test_the_neutral_point_repeats_the_rows_own_evaluation(curves):
  """At the knob's neutral value the sampler, key and counts are the row's final evaluation's: the same FID."""
  root, out, _, _ = curves
  for row, name in (("glow", "temperature_1"), ("gan", "truncation_off"), ("ddpm", "free_1")):
    with open(os.path.join(root, row, "results.json")) as f:
      own = json.load(f)["sample_quality"]
    with open(os.path.join(out, row, f"{name}.json")) as f:
      point = json.load(f)["sample_quality"]
    assert point["fid"] == pytest.approx(own["fid"], rel=1e-6), row


@pytest.mark.slow
def test_a_rerun_measures_nothing(curves, capsys):
  from experiments.comparison import tradeoff_curves
  root, out, argv, _ = curves
  before = {p: os.path.getmtime(os.path.join(out, p)) for p in ("glow/temperature_0.5.json", "ddpm/free_4.json")}
  capsys.readouterr()
  tradeoff_curves.main(argv)
  assert capsys.readouterr().out.count("measured before") == len(ROWS)
  assert before == {p: os.path.getmtime(os.path.join(out, p)) for p in before}


def test_set_takes_sampler_keys_only_and_parses_their_values():
  from experiments.comparison import tradeoff_curves
  assert tradeoff_curves.parse_sets(["sample.ddim_steps=25", "sample.eta=0.5", "sample.conditional=true",
                                     "sample.decode=mode"]) == {
      "sample.ddim_steps": 25, "sample.eta": 0.5, "sample.conditional": True, "sample.decode": "mode"}
  for bad in ("train.num_steps=3", "sample.ddim_steps", "sample.ddim_steps="):
    with pytest.raises(SystemExit, match="--set=sample.KEY=VALUE"):
      tradeoff_curves.parse_sets([bad])


def test_a_set_key_the_rows_config_lacks_is_refused_in_one_line(tmp_path):
  import argparse
  from experiments.comparison import tradeoff_curves
  (tmp_path / "config.json").write_text(load_config("ddpm").to_json())
  args = argparse.Namespace(set={"sample.ddim_stepz": 2})
  with pytest.raises(SystemExit, match="--set sample.ddim_stepz: no such key in ddpm's config"):
    tradeoff_curves.measure_row("ddpm", str(tmp_path), args, None, {})


@pytest.mark.slow
def test_a_set_sampler_key_reaches_every_point_and_is_a_setting_of_its_own(curves, tmp_path, capsys):
  """--set=sample.ddim_steps=2 measures the guidance curve with a 2-step DDIM sampler: every point's
  overrides and settings carry it, the table says so, and the points measured without it are not reused."""
  from experiments.comparison import tradeoff_curves
  root, out, argv, _ = curves
  cheap = [a for a in argv if not a.startswith("--out=")] + [f"--out={tmp_path}", "--only=ddpm", "--set=sample.ddim_steps=2"]
  tradeoff_curves.main(cheap)
  for value in ("0", "1", "4"):
    with open(tmp_path / "ddpm" / f"free_{value}.json") as f:
      record = json.load(f)
    assert record["overrides"]["sample.ddim_steps"] == 2 and record["settings"]["set"] == {"sample.ddim_steps": 2}
  assert "--set" in (tmp_path / "tradeoff.md").read_text()
  capsys.readouterr()
  tradeoff_curves.main(cheap)                                   # the same settings: nothing measured again
  assert "measured before" in capsys.readouterr().out
