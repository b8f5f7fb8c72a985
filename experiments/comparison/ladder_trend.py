"""The ladder across its rungs: one table of every row's bits/dim, FID and class agreement at each
judged rung, and which row leads each at each rung (OUT/trend.md, written by `ladder.write_all`).

Leaders are read with the comparison's rules: likelihoods only within one condition (-log p(x),
-log p(x | label), -log p(x | caption)), each with its kind, since a bound that is lowest shows
that its model is at least that good but an exact number above a bound does not show the
opposite; FID over every row that samples; class agreement over the conditional rows (label
and caption conditions apart: a label names the class, a caption describes it).
"""
import math

CONDITIONS = (("none", "-log p(x)"), ("label", "-log p(x | label)"), ("caption", "-log p(x | caption)"))


def _number(value) -> float | None:
  return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def leaders(records: list[dict]) -> dict:
  """{what: (row name, value, kind or '')} for one rung's records: the lowest bits/dim within each
  condition ('bits/dim, -log p(x)', ..), the lowest FID, and the highest class agreement among
  label-conditioned and among caption-conditioned samples. What no row has is left out."""
  rows = [r["row"] for r in records]
  out = {}
  for condition, name in CONDITIONS:
    scored = [r for r in rows if r["condition"] == condition and _number(r.get("bpd")) is not None]
    if scored:
      best = min(scored, key=lambda r: r["bpd"])
      out[f"bits/dim, {name}"] = (best["name"], float(best["bpd"]), best["likelihood_kind"])
  sampled = [r for r in rows if _number(r.get("fid")) is not None]
  if sampled:
    best = min(sampled, key=lambda r: r["fid"])
    out["FID"] = (best["name"], float(best["fid"]), "")
  for condition in ("label", "caption"):
    agreeing = [r for r in rows if r.get("samples_conditioned_on") == condition
                and _number(r.get("class_agreement")) is not None]
    if agreeing:
      best = max(agreeing, key=lambda r: r["class_agreement"])
      out[f"class agreement, {condition}-conditioned samples"] = (best["name"], float(best["class_agreement"]), "")
  return out


def _cell(row: dict | None, key: str, digits: int) -> str:
  value = None if row is None else _number(row.get(key))
  return "–" if value is None else f"{value:.{digits}f}"


def trend_markdown(found: dict) -> str:
  """found: {minutes: [record, ..]} (ladder.judged). A markdown table, rows in the comparison's order:
  bits/dim (kind), FID and class agreement at every judged rung ('–': not judged yet, or no such
  number), then the leaders of each rung."""
  rungs = sorted(found)
  by_rung = {m: {r["row"]["name"]: r["row"] for r in found[m]} for m in rungs}
  names = list(dict.fromkeys(r["row"]["name"] for m in rungs for r in found[m]))
  label = [f"{m:g} min" for m in rungs]
  header = (["row", "kind", "condition"] + [f"bits/dim {x}" for x in label] + [f"FID {x}" for x in label]
            + [f"class agreement {x}" for x in label])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (3 * len(rungs))]
  for name in names:
    rows = [by_rung[m].get(name) for m in rungs]
    first = next(r for r in rows if r is not None)
    cells = [name, first["likelihood_kind"], first["condition"]]
    cells += [_cell(r, "bpd", 3) for r in rows] + [_cell(r, "fid", 0) for r in rows]
    cells += [_cell(r, "class_agreement", 3) for r in rows]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "Leaders at each rung, among the rows judged there (likelihoods within one condition, each with its "
            "kind: a bound that is lowest shows its model at least that good):", ""]
  whats = [f"bits/dim, {name}" for _, name in CONDITIONS] + ["FID"] + [
      f"class agreement, {c}-conditioned samples" for c in ("label", "caption")]
  lines.append("| rung | rows judged | " + " | ".join(
      ("lowest " if not w.startswith("class") else "highest ") + w.replace("|", "\\|") for w in whats) + " |")
  lines.append("|---|---:|" + "---|" * len(whats))
  for m in rungs:
    best = leaders(found[m])
    cells = []
    for w in whats:
      if w not in best:
        cells.append("–")
        continue
      name, value, kind = best[w]
      digits = 1 if w == "FID" else 3
      cells.append(f"{name} {value:.{digits}f}" + (f" ({kind})" if kind else ""))
    lines.append(f"| {m:g} min | {len(found[m])} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
