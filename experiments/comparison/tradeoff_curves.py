"""Quality-diversity trade-off curves: every family's sampling knob swept on trained models, judged by one evaluation.

  python -m experiments.comparison.tradeoff_curves --workdirs=/work/ladder/rungs/64min --judges=/work/ladder/judges \\
      --guide=ddpm:classifier=DIR --guide=ddpm:clip=DIR        # the guides: noise-conditional judges (optional)
  python -m experiments.comparison.tradeoff_curves --workdirs=W --judges=J --out=/tmp/tradeoff --num_samples=16   # tiny

Each row is a trained workdir under --workdirs (the comparison's rows: ROW/config.json and a
checkpoint), restored once from its own config.json with the frozen models it names. Its knob
(`KNOBS`, one `--config.sample.*` key per form) is swept, the rest of the config as trained:
  flows (RealNVP, Glow), image-GPT,  sample.temperature      0.5 .. 1.0 (1: the model as trained)
  the code prior (two-stage)
  GAN, VAE                           sample.truncation       0.25 .. 2, and 0 (off: the model as trained)
  diffusion, latent diffusion,       sample.guidance         w = 0, 0.5, 1, 2, 4, 8 (0 unconditional, 1 conditional)
  classifier-free
  diffusion, classifier / CLIP       sample.guidance_scale   s = 0, 0.5, 1, 2, 4, 8 with the noise-conditional guide
                                                             of --guide=ROW:FORM=WORKDIR (docs/guidance.md)
Every point is judged by `genfam.evaluation.sample_quality.evaluate` with the ladder's judges and sample
counts (--num_samples samples against the first --reference_images test images, conditions from the
first --condition_images): FID, class agreement, CLIP cosine (caption models) and diversity (the mean
classifier-feature distance of samples sharing a condition), with the same sampler key at every point
of a row (common random numbers: the neutral point draws the samples `--mode=eval` draws).

Writes OUT/<row>/<form>_<value>.json per point at once, the picture of its first 40 samples beside it
(.png; a rerun skips a point whose file has the same settings: workdir, step, sample counts, guide, --set),
then from every point file OUT/tradeoff.md (every point, and per row and form the fidelity bought
per unit of FID from the model as trained to its most faithful point: `fidelity_per_fid`) and the
figures, every family on the same axes, one curve per row and form, the knob's values beside the points:
  OUT/class_agreement_vs_fid.png   fidelity to the label / caption's class against FID (conditional rows)
  OUT/clip_cosine_vs_fid.png       fidelity to the caption (CLIP cosine) against FID (caption rows)
  OUT/diversity_vs_fid.png         diversity against FID (every row)
OUT defaults to experiments/results/tradeoff; tiny runs (tests) write elsewhere.
"""
import argparse
import json
import math
import os
import sys
import time
from typing import NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/<group>/<module>.py
SCALES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
PICTURE_SAMPLES = 40   # each point's first samples, kept as OUT/<row>/<form>_<value>.png
METRICS = ("fid", "fid_floor", "kid", "class_agreement", "class_agreement_real", "clip_cosine", "clip_cosine_real",
           "diversity", "diversity_real", "diversity_pairs", "sample_images_per_s", "num_samples", "num_reference",
           "num_conditions")


class Form(NamedTuple):
  """One knob of a family: `key` swept over `values` (`neutral`: the model as trained), with `fixed`
  keys set beside it; `guide` names the form whose noise-conditional guide a point needs (or '')."""
  name: str
  key: str
  values: tuple
  neutral: float
  fixed: tuple = ()
  guide: str = ""


TEMPERATURE = Form("temperature", "sample.temperature", (0.5, 0.6, 0.7, 0.8, 0.9, 1.0), 1.0)
TRUNCATION = Form("truncation", "sample.truncation", (0.25, 0.5, 1.0, 1.5, 2.0, 0.0), 0.0)
FREE = Form("free", "sample.guidance", SCALES, 1.0)
CLASSIFIER = Form("classifier", "sample.guidance_scale", SCALES, 0.0, (("sample.guidance_form", "classifier"),),
                  "classifier")
CLIP = Form("clip", "sample.guidance_scale", SCALES, 0.0, (("sample.guidance_form", "clip"),), "clip")
KNOBS = {"flow": (TEMPERATURE,), "igpt": (TEMPERATURE,), "code_prior": (TEMPERATURE,), "gan": (TRUNCATION,),
         "vae": (TRUNCATION,), "diffusion": (FREE, CLASSIFIER, CLIP), "latent_diffusion": (FREE,)}


def conditioned_on(config) -> str:
  """What the row's model itself is conditioned on: '', 'label' or 'caption' (from its config)."""
  m = config.get("model", {})
  if m.get("condition", "") in ("label", "caption"):
    return m.condition
  return "label" if m.get("class_conditional", False) else ""


def forms_of(config, guides: dict, row: str) -> list[tuple[Form, str]]:
  """The (form, guide workdir) pairs that apply to a row: classifier-free guidance for a conditional
  diffusion model trained with a null condition; classifier guidance (not for a caption model, whose
  evaluation conditions are captions) and CLIP guidance where --guide names their workdirs."""
  out = []
  for form in KNOBS.get(config.family, ()):
    if form is FREE and not (conditioned_on(config) and config.model.get("p_uncond", 0) > 0):
      continue
    if form is CLASSIFIER and conditioned_on(config) == "caption":
      continue
    guide = ""
    if form.guide:
      guide = guides.get((row, form.guide)) or guides.get(("*", form.guide), "")
      if not guide:
        continue
    out.append((form, guide))
  return out


def point_overrides(config, form: Form, value: float, guide: str) -> dict:
  """The --config.<key>=<value> of one point."""
  out = dict(form.fixed)
  out[form.key] = float(value)
  if form.guide:
    out[f"sample.guidance_{form.guide}_workdir"] = guide
    if conditioned_on(config) != "caption":
      out["sample.conditional"] = True      # the guide steers toward labels (read as prompts by CLIP)
  return out


def value_label(form: Form, value: float) -> str:
  return "off" if form is TRUNCATION and value == 0 else f"{value:g}"


def point_path(out: str, row: str, form: Form, value: float) -> str:
  return os.path.join(out, row, f"{form.name}_{value_label(form, value)}.json")


def _read(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _write(path: str, record: dict) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".partial", "w") as f:
    json.dump(record, f, indent=1, default=float)
  os.replace(path + ".partial", path)


def latest_step(workdir: str) -> int:
  """The newest checkpoint step in WORKDIR/checkpoints (-1 if none): what a point was measured on."""
  folder = os.path.join(workdir, "checkpoints")
  steps = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
  return max(steps, default=-1)


def rows_under(workdirs: str, only: str = "") -> list[str]:
  """The row folders under `workdirs` (a config.json whose family has a knob), in the comparison's
  order (experiments.comparison.compare.ENTRIES), then by name; `only`: comma-separated names."""
  from experiments.comparison import compare
  from genfam.settings import config_files
  wanted = [n for n in only.split(",") if n]
  order = {e.name: i for i, e in enumerate(compare.ENTRIES)}
  names = []
  for name in sorted(os.listdir(workdirs), key=lambda n: (order.get(n, len(order)), n)):
    config = config_files.saved(os.path.join(workdirs, name))
    if (not wanted or name in wanted) and config is not None and config.get("family") in KNOBS:
      names.append(name)
  missing = sorted(set(wanted) - set(names))
  if missing:
    raise SystemExit(f"error: no trained row {', '.join(missing)} with a sampling knob under {workdirs}")
  return names


def measure_row(row: str, workdir: str, args, judges, guides: dict) -> list[dict]:
  """Every point of one row not yet measured with these settings; -> all its point records."""
  import jax
  from genfam import registry
  from genfam.evaluation import images, sample_quality
  from genfam.loop import frozen, train
  from genfam.settings import config_files

  base = config_files.saved(workdir)
  unknown = sorted(set(args.set) - set(config_files.flatten(base)))
  if unknown:
    raise SystemExit(f"error: --set {', '.join(unknown)}: no such key in {row}'s config; see its config.json")
  forms = forms_of(base, guides, row)
  draws = args.sample_batch_size or base.eval.get("sample_batch_size", 500)   # the draws' size fixes the samples
  todo, records = [], []
  for form, guide in forms:
    for value in args.values.get(form.name, form.values):
      path = point_path(args.out, row, form, value)
      settings = {"workdir": os.path.abspath(workdir), "step": latest_step(workdir), "num_samples": args.num_samples,
                  "reference_images": args.reference_images, "condition_images": args.condition_images,
                  "kid_stats_images": args.kid_stats_images, "sample_batch_size": draws, "guide": guide,
                  "set": args.set}
      done = _read(path)
      if done and all({"set": {}, **done.get("settings", {})}.get(k) == v for k, v in settings.items()):
        # (points measured before --set existed set nothing)
        records.append(done)
      else:
        todo.append((form, guide, value, path, settings))
  if not todo:
    print(f"{row}: {len(records)} points measured before", flush=True)
    return records
  run = train.Run(base, workdir)
  state, _, meta = run.restore_or_fail()
  step = int(meta["step"])
  key = jax.random.fold_in(run.sample_key, train.FINAL_EVAL)   # the samples --mode=eval draws, at the neutral value
  memo, inputs = {}, {}
  for form, guide, value, path, settings in todo:
    overrides = {**args.set, **point_overrides(base, form, value, guide)}
    config = config_files.apply_overrides(base.copy_and_resolve_references(), overrides)
    if form.name not in inputs:    # the frozen models of the form (a guide), restored once per form
      inputs[form.name] = frozen.family_inputs(config, run.spec)
    family = registry.make_family(config, run.spec, **inputs[form.name])
    point_condition = sample_quality.sample_condition(family.likelihood_condition,
                                                      config.sample.get("conditional", False))
    start = time.time()
    report = sample_quality.evaluate(
        family.sample, family.eval_params(state), run.sources["test"], run.sources["train"], run.spec, key, judges,
        condition=point_condition, num_samples=args.num_samples, sample_batch_size=draws,
        batch_size=base.eval.batch_size, reference_images=args.reference_images,
        condition_images=args.condition_images, kid_stats_images=args.kid_stats_images, memo=memo,
        keep=PICTURE_SAMPLES)
    first = report.pop("first_samples")   # the first samples, drawn from test conditions 0, 1, ..: the point's picture
    images.save_grid(path[:-len(".json")] + ".png", first["image"], run.spec.num_bins, columns=10)
    record = {"row": row, "family": base.family, "model_condition": conditioned_on(base),
              "samples_conditioned_on": point_condition or "none", "form": form.name, "key": form.key,
              "value": float(value), "neutral": value == form.neutral, "overrides": overrides, "step": step,
              "settings": settings, "seconds": time.time() - start,
              "sample_quality": {k: report[k] for k in METRICS if k in report},
              "command": "python -m experiments.comparison.tradeoff_curves " + " ".join(args.argv)}
    _write(path, record)
    records.append(record)
    q = record["sample_quality"]
    print(f"{row} {form.name}={value_label(form, value)}: FID {q['fid']:.2f}, diversity {q['diversity']:.3f}"
          + (f", class agreement {q['class_agreement']:.3f}" if "class_agreement" in q else "")
          + (f", CLIP cosine {q['clip_cosine']:.3f}" if "clip_cosine" in q else "")
          + f" ({record['seconds']:.0f} s) -> {path}", flush=True)
  return records


# ------------------------------------------------------------------------------------------------ tables and figures

def all_points(out: str) -> dict:
  """{(row, form): [record, ...] in the knob's order (truncation 'off' last)} of every point file under OUT."""
  curves = {}
  for row in sorted(os.listdir(out)) if os.path.isdir(out) else ():
    folder = os.path.join(out, row)
    if not os.path.isdir(folder):
      continue
    for name in sorted(os.listdir(folder)):
      record = _read(os.path.join(folder, name)) if name.endswith(".json") else None
      if record:
        curves.setdefault((record["row"], record["form"]), []).append(record)
  key = lambda r: math.inf if r["form"] == "truncation" and r["value"] == 0 else r["value"]
  return {k: sorted(v, key=key) for k, v in curves.items()}


def _label(record) -> str:
  return "off" if record["form"] == "truncation" and record["value"] == 0 else f"{record['value']:g}"


def draw(curves: dict, metric: str, path: str, ylabel: str) -> str | None:
  """One figure: `metric` (y) against FID (x, log), a line per (row, form) with the knob values beside
  its points and the neutral point (the model as trained) edged black, the real test images' value
  ('<metric>_real', per kind of condition) dotted grey; None if no curve has the metric."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker
  chosen = {k: v for k, v in curves.items() if all(metric in r["sample_quality"] for r in v)}
  if not chosen:
    return None
  fig, ax = plt.subplots(figsize=(7.5, 5.2))
  markers = "osD^v<>ph*Xd"
  for i, ((row, form), records) in enumerate(chosen.items()):
    x = [r["sample_quality"]["fid"] for r in records]
    y = [r["sample_quality"][metric] for r in records]
    line, = ax.plot(x, y, marker=markers[i % len(markers)], label=f"{row}: {form} ({records[0]['key']})")
    for r, xi, yi in zip(records, x, y):
      ax.annotate(_label(r), (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
      if r["neutral"]:
        ax.plot([xi], [yi], marker=markers[i % len(markers)], color=line.get_color(), mec="black", mew=1.5)
  reals = {(r["samples_conditioned_on"], r["sample_quality"].get(metric + "_real")) for v in chosen.values() for r in v}
  by_value = {}
  for condition, value in sorted((c, v) for c, v in reals if isinstance(v, float) and math.isfinite(v)):
    by_value.setdefault(value, []).append("by " + condition if condition != "none" else "all")
  for value, groups in by_value.items():
    ax.axhline(value, color="grey", ls=":", lw=1)
    ax.annotate(f"real images ({', '.join(groups)})", (0.01, value), xycoords=("axes fraction", "data"),
                fontsize=6, color="grey", va="bottom")
  ax.set_xscale("log")
  ax.xaxis.set_major_formatter(matplotlib.ticker.LogFormatter())   # plain numbers, not 3.2 x 10^0
  ax.xaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
  ax.set_xlabel("FID on classifier features (lower is better)")
  ax.set_ylabel(ylabel)
  n = {r["sample_quality"]["num_samples"] for v in chosen.values() for r in v}
  ax.set_title(f"{ylabel.split(' (')[0]} against FID, {'/'.join(map(str, sorted(n)))} samples per point",
               fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def table(curves: dict) -> str:
  """Markdown: one line per point, the knob's value and every metric."""
  head = ("| row | form | key | value | FID | class agreement | CLIP cosine | diversity | diversity (real) | "
          "samples | step |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  fmt = lambda q, k, d=3: f"{q[k]:.{d}f}" if isinstance(q.get(k), (int, float)) and math.isfinite(q[k]) else "n/a"
  for (row, form), records in curves.items():
    for r in records:
      q = r["sample_quality"]
      lines.append(f"| {row} | {form} | {r['key']} | {_label(r)}{' (as trained)' if r['neutral'] else ''} | "
                   f"{fmt(q, 'fid', 2)} | {fmt(q, 'class_agreement')} | {fmt(q, 'clip_cosine')} | "
                   f"{fmt(q, 'diversity')} | {fmt(q, 'diversity_real')} | {q['num_samples']} | {r['step']} |")
  return "\n".join(lines) + "\n"


def fidelity_per_fid(curves: dict, metric: str) -> str:
  """Markdown: for each (row, form) with `metric`, the neutral point (the model as trained), the point of
  highest `metric`, and what that fidelity cost: (metric_best - metric_neutral) / (FID_best - FID_neutral),
  the fidelity bought per unit of FID ('FID falls too' where it costs none)."""
  lines = [f"| row | form | as trained: {metric} / FID | best {metric}: value, {metric} / FID | "
           f"gain per unit of FID |", "|---|---|---|---|---|"]
  for (row, form), records in curves.items():
    neutral = [r for r in records if r["neutral"]]
    scored = [r for r in records if isinstance(r["sample_quality"].get(metric), float)
              and math.isfinite(r["sample_quality"][metric])]
    if not neutral or not scored:
      continue
    n, b = neutral[0]["sample_quality"], max(scored, key=lambda r: (r["sample_quality"][metric], r["neutral"]))
    q = b["sample_quality"]
    gain, cost = q[metric] - n[metric], q["fid"] - n["fid"]
    per = "none gained" if gain <= 0 else ("FID falls too" if cost <= 0 else f"{gain / cost:.4g}")
    lines.append(f"| {row} | {form} | {n[metric]:.3f} / {n['fid']:.2f} | {_label(b)}: {q[metric]:.3f} / "
                 f"{q['fid']:.2f} | {per} |")
  return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def draw_all(out: str) -> list[str]:
  """The table and the three figures from every point file under OUT; -> the paths written."""
  curves = all_points(out)
  if not curves:
    return []
  paths = [p for p in (draw(curves, "class_agreement", os.path.join(out, "class_agreement_vs_fid.png"),
                            "class agreement of the samples (fidelity to the condition)"),
                       draw(curves, "clip_cosine", os.path.join(out, "clip_cosine_vs_fid.png"),
                            "CLIP cosine of sample and caption (fidelity to the caption)"),
                       draw(curves, "diversity", os.path.join(out, "diversity_vs_fid.png"),
                            "diversity (mean feature distance within a condition)")) if p]
  with open(os.path.join(out, "tradeoff.md"), "w") as f:
    sets = {json.dumps(r["settings"].get("set") or {}, sort_keys=True) for v in curves.values() for r in v}
    if sets != {"{}"}:
      f.write(f"Every point's sampler also set (--set): {', '.join(sorted(sets))}.\n\n")
    f.write(table(curves))
    for metric in ("clip_cosine", "class_agreement"):
      summary = fidelity_per_fid(curves, metric)
      if summary:
        f.write(f"\nFidelity bought per unit of FID ({metric}): from the model as trained to the knob's value of "
                f"highest {metric}.\n\n{summary}")
  return paths + [os.path.join(out, "tradeoff.md")]


# ------------------------------------------------------------------------------------------------ command line

def parse_guides(items: list[str]) -> dict:
  """['ROW:FORM=DIR', ...] (ROW may be '*') -> {(row, form): dir}."""
  guides = {}
  for item in items:
    target, _, workdir = item.partition("=")
    row, _, form = target.partition(":")
    if not (row and form in ("classifier", "clip") and workdir):
      raise SystemExit(f"error: --guide={item!r}: use --guide=ROW:classifier=DIR or --guide=ROW:clip=DIR (ROW may be *)")
    guides[(row, form)] = workdir
  return guides


def parse_values(items: list[str]) -> dict:
  """['FORM=v1,v2', ...] -> {form: (v1, v2)}."""
  out = {}
  for item in items:
    form, _, values = item.partition("=")
    try:
      out[form] = tuple(float(v) for v in values.split(","))
    except ValueError:
      raise SystemExit(f"error: --values={item!r}: use --values=FORM=0.5,1 (FORM: temperature, truncation, free, "
                       f"classifier, clip)") from None
  return out


def parse_sets(items: list[str]) -> dict:
  """['sample.ddim_steps=25', ..] -> {'sample.ddim_steps': 25, ..} (ints, floats, true/false, else text);
  only the sampler's keys: a point samples a trained model, so other keys would not change it."""
  out = {}
  for item in items:
    key, sep, text = item.partition("=")
    if not sep or not key.startswith("sample.") or not text:
      raise SystemExit(f"error: --set={item!r}: use --set=sample.KEY=VALUE (e.g. --set=sample.ddim_steps=25)")
    value = {"true": True, "false": False}.get(text.lower(), text)
    for kind in (int, float):
      if isinstance(value, str):
        try:
          value = kind(text)
        except ValueError:
          pass
    out[key] = value
  return out


def main(argv=None) -> list[str]:
  argv = sys.argv[1:] if argv is None else list(argv)
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdirs", required=True, help="a folder of trained rows (e.g. a ladder rung)")
  parser.add_argument("--judges", required=True, help="a folder with the classifier/ and clip/ judges")
  parser.add_argument("--out", default=os.path.join(REPO, "experiments", "results", "tradeoff"))
  parser.add_argument("--only", default="", help="comma-separated row names (default: every row with a knob)")
  parser.add_argument("--guide", action="append", default=[], help="ROW:FORM=DIR, a noise-conditional guide")
  parser.add_argument("--values", action="append", default=[], help="FORM=v1,v2,.. instead of the form's sweep")
  parser.add_argument("--num_samples", type=int, default=2000, help="samples per point (the ladder's)")
  parser.add_argument("--reference_images", type=int, default=10000, help="FID reference: first N test images")
  parser.add_argument("--condition_images", type=int, default=1000, help="conditions from the first N test images")
  parser.add_argument("--kid_stats_images", type=int, default=10000, help="KID's standardization: first N train images")
  parser.add_argument("--sample_batch_size", type=int, default=0,
                      help="samples per sampler call (0: the row's eval.sample_batch_size, as its --mode=eval)")
  parser.add_argument("--set", action="append", default=[],
                      help="KEY=VALUE, a sample.* key set at every point (e.g. sample.ddim_steps=25: a cheaper "
                      "sampler for every point, the neutral one too); recorded in each point")
  parser.add_argument("--tables", action="store_true", help="only redraw the table and figures")
  args = parser.parse_args(argv)
  args.argv, args.values, args.set = argv, parse_values(args.values), parse_sets(args.set)
  guides = parse_guides(args.guide)
  if not args.tables:
    from genfam.loop import frozen
    from genfam.settings import config_files
    rows = rows_under(args.workdirs, args.only)
    judges, dataset = None, ""
    for row in rows:
      workdir = os.path.join(args.workdirs, row)
      if judges is None:
        dataset = config_files.saved(workdir).data.name
        clip = os.path.join(args.judges, "clip")
        judges = frozen.load_judges(os.path.join(args.judges, "classifier"),
                                    clip if os.path.exists(os.path.join(clip, "config.json")) else "", dataset)
      if config_files.saved(workdir).data.name != dataset:
        raise SystemExit(f"error: row {row} is trained on {config_files.saved(workdir).data.name!r}, the judges on "
                         f"{dataset!r}: sweep one dataset's rows at a time (--only)")
      measure_row(row, workdir, args, judges, guides)
  paths = draw_all(args.out)
  for p in paths:
    print(f"wrote {p}", flush=True)
  return paths


if __name__ == "__main__":
  main()
