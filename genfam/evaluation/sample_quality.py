"""Sample quality, text agreement and sampling speed: one evaluation for every generative family.

The same code, test images and sample count N judge every family that has a
sampler (docs/DESIGN.md, "Evaluation beyond likelihood"); the judges are the
frozen domain classifier (configs/classifier.py, `eval.classifier_workdir`) and,
for caption models, the frozen contrastive encoders (configs/clip.py,
`eval.clip_workdir`), both restored by the loop (`genfam.loop.frozen.load_judges`).

Reference set: the first M test images (eval.reference_images; 0: M = min(N, test
size)). Conditions: the labels and evaluation captions (seed `pipeline.EVAL_CAPTION_SEED`,
epoch 0: what `pipeline.eval_batches` gives) of the first C test images
(eval.condition_images; 0: C = M). Sample i is drawn
- unconditionally by an unconditional model (condition ''),
- from the label of test image i mod C by a label model (condition 'label'),
- from the caption of test image i mod C by a caption model (condition 'caption'),
so a conditional model's class mix is that of the first C test images.

FID and KID (`genfam.evaluation.fid`) on the classifier's penultimate features f(x) in R^F:
  fid = FID(f(samples), f(reference)),   kid = KID(z(samples), z(reference)),
where z standardizes each feature with the mean and standard deviation of the first
S train images' features (eval.kid_stats_images; `fid.standardizer`), so that KID's
cubic kernel sees features of order 1; FID is on the raw features (it is comparable
with earlier reports). Beside them the real-vs-real floor: the first min(N, train size)
TRAIN images against the same reference, at the same N (FID is biased in N; KID is not).

Text agreement (conditional models), over samples i with condition c_i from test image j = i mod C:
  class_agreement   = 1/N sum_i [argmax classifier(x_i) = label_j]      (label and caption models)
  <attr>_agreement  = mean over the samples whose caption names attribute a of
                      [measure_a(x_i) = the caption's value of a]        (caption models)
  clip_cosine       = 1/N sum_i t(c_i) . v(x_i)                          (caption models, unit-norm CLIP embeddings)
with `captions.measure_attributes` under the dataset's own thresholds. The same
numbers for the C real test images with their own captions ('<name>_real') are
the ceiling; the attribute ceiling is 1 exactly, since a caption names the
measured attributes of its image. '<attr>_named' is the share of captions that
name attribute a.

Diversity, the spread of the samples that share a condition (every sample, for an unconditional
model), on the classifier's raw features f (as FID's):
  diversity = sum_g sum_{i<j in g} ||f(x_i) - f(x_j)||_2 / sum_g n_g (n_g - 1) / 2,
the mean Euclidean feature distance over all pairs of samples drawn from the same condition
(groups g: one label, or one caption's exact tokens; a group of one sample has no pair). It falls
to 0 when every condition's samples are identical; the same number for the C real test images
grouped by their own conditions ('diversity_real'; for an unconditional model the floor's train
images as one group) is the real spread, and 'diversity_pairs' counts the pairs.

Speed: sample_images_per_s over the draws after the first (which compiles);
with a single draw, over that one ('sample_speed_includes_compile' = 1), on the clock the caller
gives (`now`; the loop gives eval.clock's, and records its name as 'sample_clock').
"""
import math
import time
from typing import NamedTuple, Optional

import jax
import numpy as np

from genfam import sharding
from genfam.data import captions, pipeline
from genfam.errors import GenfamError
from genfam.evaluation import fid

CONDITIONS = ("", "label", "caption")


class Judges(NamedTuple):
  """The frozen models that judge samples: the domain classifier, and CLIP (or None)."""
  classifier: object   # genfam.loop.frozen.Frozen of configs/classifier.py
  clip: Optional[object]  # genfam.loop.frozen.Frozen of configs/clip.py, or None


def sample_condition(likelihood_condition: str, sample_conditional: bool) -> str:
  """What samples are conditioned on: the likelihood's condition ('label', 'caption'), else
  'label' for a label-mixture model that samples by label (config.sample.conditional, e.g.
  DDPM's sum_y p(x | y) / C), else '' (unconditional)."""
  if likelihood_condition not in CONDITIONS:
    raise ValueError(f"unknown condition {likelihood_condition!r}; use one of {CONDITIONS}")
  return likelihood_condition or ("label" if sample_conditional else "")


def reference(source, num: int) -> dict:
  """The first `num` records of a (test) split as the evaluation reads them:
  {'image' uint8 [M, H, W, C], 'label' int32 [M], and for a CaptionedSource
  'attributes' int32 [M, A], 'caption' int32 [M, L]} (the captions of `pipeline.eval_batches`)."""
  num = min(num, len(source))
  spec = getattr(source, "spec", None)
  out = {"image": pipeline.split_images(source)[:num],
         "label": np.array([int(source[i]["label"]) for i in range(num)], np.int32)}
  if isinstance(source, pipeline.CaptionedSource):
    out["attributes"] = np.asarray(source.attributes[:num], np.int32)
    out["caption"] = np.stack([captions.example_caption(spec, pipeline.EVAL_CAPTION_SEED, i, 0, out["label"][i],
                                                        out["attributes"][i]) for i in range(num)])
  return out


def draw_samples(sample, params, rng, num: int, batch_size: int, condition=None,
                 now=time.perf_counter) -> tuple[np.ndarray, dict]:
  """`num` samples in draws of b = min(batch_size, num) (the last draw's surplus dropped), and their speed.

  sample(params, rng, b, condition) -> uint8 [b, H, W, C]; condition: None or an
  array whose leading axis is num (labels [num], caption tokens [num, L]).
  now: () -> seconds, the clock the draws are timed on (wall clock by default).
  -> (uint8 [num, H, W, C], {'sample_images_per_s', 'sample_seconds',
      'sample_first_draw_seconds', 'sample_batch_size', 'sample_speed_includes_compile'}).
  """
  b = max(1, min(batch_size, num))
  draws, chunks, seconds = -(-num // b), [], []
  for i in range(draws):
    c = None
    if condition is not None:
      rows = np.arange(i * b, (i + 1) * b) % num  # a short last draw repeats the first conditions
      c = np.asarray(condition)[rows]
    start = now()
    chunks.append(sharding.to_host(sample(params, jax.random.fold_in(rng, i), b, c)))
    seconds.append(now() - start)
  images = np.concatenate(chunks)[:num]
  steady = draws > 1
  speed = {"sample_images_per_s": (b * (draws - 1) / sum(seconds[1:])) if steady else num / seconds[0],
           "sample_seconds": float(sum(seconds)), "sample_first_draw_seconds": float(seconds[0]),
           "sample_batch_size": b, "sample_speed_includes_compile": 0.0 if steady else 1.0}
  return images, speed


def batched(fn, batch_size: int):
  """fn(*arrays [b, ...]) -> [b, ...] applied to arrays [N, ...] in jitted batches of a fixed size
  (the last one padded with its first row), results concatenated: -> [N, ...] numpy."""
  jitted = jax.jit(fn)

  def apply(*arrays):
    n = len(arrays[0])
    out = []
    for s in range(0, n, batch_size):
      chunk = [np.asarray(a[s:s + batch_size]) for a in arrays]
      short = batch_size - len(chunk[0])
      chunk = [np.concatenate([c, np.repeat(c[:1], short, 0)]) if short else c for c in chunk]
      out.append(np.asarray(jitted(*chunk))[:batch_size - short])
    return np.concatenate(out)

  return apply


def named_attributes(tokens: np.ndarray, spec) -> np.ndarray:
  """Caption tokens int [N, L] -> int32 [N, A]: the value index of each attribute the caption
  names, -1 where it names none (value words are distinct across attributes)."""
  ids = {w: i for i, w in enumerate(spec.vocabulary)}
  tokens = np.asarray(tokens)
  out = np.full((len(tokens), len(spec.attribute_names)), -1, np.int32)
  for a, values in enumerate(spec.attribute_values):
    for v, word in enumerate(values):
      out[(tokens == ids[word]).any(axis=1), a] = v
  return out


def text_agreement(images, labels, tokens, judges: Judges, spec, thresholds: dict, batch_size: int,
                   *, attributes: bool = True) -> dict:
  """Agreement of images uint8 [N, H, W, C] with their conditions (formulas in the module docstring).

  labels: int [N], the class of the caption (or the label) each image was drawn from.
  tokens: int [N, L] caption tokens, or None for a label model (then only class_agreement).
  -> {'class_agreement'[, '<attr>_agreement', '<attr>_named', 'clip_cosine']}; an attribute no
  caption names gets agreement nan.
  """
  classifier = judges.classifier
  predicted = batched(lambda x: classifier.functions["predict"](classifier.params, x)["class"], batch_size)(images)
  out = {"class_agreement": float(np.mean(predicted == np.asarray(labels)))}
  if tokens is None or not attributes:
    return out
  measured = captions.measure_attributes(images, spec.num_bins, thresholds)   # [N, A]
  named = named_attributes(tokens, spec)                                       # [N, A]
  for a, name in enumerate(spec.attribute_names):
    rows = named[:, a] >= 0
    out[f"{name}_agreement"] = float(np.mean(measured[rows, a] == named[rows, a])) if rows.any() else math.nan
    out[f"{name}_named"] = float(rows.mean())
  if judges.clip is not None:
    clip = judges.clip
    cosine = batched(lambda x, t: clip.functions["agreement"](clip.params, x, t), batch_size)(images, tokens)
    out["clip_cosine"] = float(np.mean(cosine))
  return out


def condition_groups(condition, num: int) -> np.ndarray:
  """Conditions of `num` samples -> int [num] group ids, equal exactly where the conditions are:
  None (unconditional: one group), labels [num], or caption tokens [num, L] (equal rows)."""
  if condition is None:
    return np.zeros(num, np.int64)
  condition = np.asarray(condition)
  return np.unique(condition.reshape(len(condition), -1), axis=0, return_inverse=True)[1].reshape(-1)


def pairwise_diversity(features, groups, block: int = 1024) -> tuple[float, int]:
  """features [N, F], groups int [N] -> (mean ||f_i - f_j||_2 over the pairs i < j with
  groups[i] = groups[j], number of such pairs); nan without a pair. Computed from the Gram matrix
  of each group's centred features (float64), in blocks of `block` rows, so memory is block x n_g."""
  features, groups = np.asarray(features, np.float64), np.asarray(groups)
  total, pairs = 0.0, 0
  for g in np.unique(groups):
    f = features[groups == g]
    n = len(f)
    if n < 2:
      continue
    f = f - f.mean(axis=0)                       # identical rows become exactly 0: distance exactly 0
    squared = np.sum(f * f, axis=1)
    for s in range(0, n, block):
      gram = f[s:s + block] @ f.T                 # [b, n]
      d2 = squared[s:s + block, None] + squared[None, :] - 2.0 * gram
      rows = np.arange(s, min(s + block, n))
      upper = np.arange(n)[None, :] > rows[:, None]   # each pair once (i < j)
      total += float(np.sum(np.sqrt(np.clip(d2, 0.0, None)) * upper))
    pairs += n * (n - 1) // 2
  return (total / pairs if pairs else math.nan), pairs


def evaluate(sample, params, test, train, spec, rng, judges: Judges, *, condition: str, num_samples: int,
             sample_batch_size: int, batch_size: int, kid_subsets: int = 100, kid_subset_size: int = 1000,
             keep: int = 0, reference_images: int = 0, condition_images: int = 0,
             kid_stats_images: int = 10000, memo: Optional[dict] = None, now=time.perf_counter) -> dict:
  """The sample-quality report of one model (kind 'sample_quality'; see the module docstring).

  sample(params, rng, num, condition) -> uint8 [num, H, W, C]: the family's sampler.
  test, train: the splits (CaptionedSource for caption models: thresholds and captions).
  condition: '', 'label' or 'caption' (`sample_condition`).
  reference_images, condition_images, kid_stats_images: M, C and S of the module docstring (0: M = min(N, test),
  C = M).
  memo: a dict kept between calls that judge several samplers with the same judges and splits (a
  sweep of one model's sampling knob): the features of the real images (reference, floor, KID
  statistics, conditions) are computed once into it and reused.
  now: the clock that times sampling (`draw_samples`).
  -> {'kind': 'sample_quality', 'condition', 'num_samples', 'num_reference', 'num_conditions', 'num_kid_stats',
      'num_floor',
      'fid', 'kid', 'kid_std', 'fid_floor', 'kid_floor', 'kid_floor_std', 'diversity', 'diversity_pairs',
      'diversity_real', speed (`draw_samples`),
      text agreement and its '<name>_real' ceiling (conditional models), 'seconds'}; with `keep`,
      also 'first_samples': {'image' uint8 [k, H, W, C], 'label' [k][, 'caption' [k, L]]}, the
      first k = min(keep, N) samples and the test conditions they were drawn from (label and
      caption of test images 0..k-1 (mod M); for pictures, not a number).
  """
  if condition not in CONDITIONS:
    raise ValueError(f"unknown condition {condition!r}; use one of {CONDITIONS}")
  if num_samples < 4:
    raise GenfamError(f"eval.num_samples={num_samples} is too few for FID and KID: set it to at least 4 "
                      f"(the comparison uses 10000)")
  if condition == "caption" and not isinstance(test, pipeline.CaptionedSource):
    raise GenfamError("a caption model is judged on the test captions, but the test split has none: "
                      "use a captioned dataset (genfam.data.sources.load)")
  start = time.time()
  ref = reference(test, reference_images or num_samples)
  m = len(ref["label"])
  conds = reference(test, condition_images) if condition_images else ref                # the first C test images
  c_count = len(conds["label"])
  rows = np.arange(num_samples) % c_count                                          # test image of sample i
  cond = {"": None, "label": conds["label"][rows],
          "caption": conds.get("caption", np.zeros((c_count, 0)))[rows]}[condition]
  samples, speed = draw_samples(sample, params, rng, num_samples, sample_batch_size, cond, now=now)
  if samples.shape[1:] != tuple(spec.image_shape) or samples.dtype != np.uint8:
    raise GenfamError(f"the sampler returned {samples.dtype} {samples.shape[1:]}, not uint8 {spec.image_shape}: "
                      f"a family's sample must return uint8 [num, H, W, C]")
  train_images = pipeline.split_images(train)
  floor_images = train_images[:num_samples]
  features = batched(lambda x: judges.classifier.functions["features"](judges.classifier.params, x), batch_size)
  memo = {} if memo is None else memo

  def real_features(name, images):  # the features of the first len(images) real images of a set, once per memo
    if (name, len(images)) not in memo:
      memo[(name, len(images))] = features(images)
    return memo[(name, len(images))]

  f_samples, f_ref, f_floor = features(samples), real_features("reference", ref["image"]), real_features(
      "floor", floor_images)                                                         # [., F]
  stats_images = train_images[:kid_stats_images]
  z = fid.standardizer(real_features("kid_stats", stats_images))                   # train-split statistics
  kid_args = dict(num_subsets=kid_subsets, subset_size=kid_subset_size)
  report = {"kind": "sample_quality", "condition": condition or None, "num_samples": num_samples,
            "num_reference": m, "num_conditions": c_count if condition else 0, "num_floor": len(floor_images),
            "num_kid_stats": len(stats_images),
            "fid": fid.fid(f_samples, f_ref), "fid_floor": fid.fid(f_floor, f_ref)}
  report["kid"], report["kid_std"] = fid.kid(z(f_samples), z(f_ref), **kid_args)
  report["kid_floor"], report["kid_floor_std"] = fid.kid(z(f_floor), z(f_ref), **kid_args)
  report["diversity"], report["diversity_pairs"] = pairwise_diversity(
      f_samples, condition_groups(cond, num_samples))
  if condition:
    real_conditions = conds["label"] if condition == "label" else conds["caption"]
    real_groups = condition_groups(real_conditions, c_count)
    report["diversity_real"] = pairwise_diversity(real_features("conditions", conds["image"]), real_groups)[0]
  else:
    report["diversity_real"] = pairwise_diversity(f_floor, condition_groups(None, len(f_floor)))[0]
  report.update(speed)
  if condition:
    tokens = cond if condition == "caption" else None
    agreement = text_agreement(samples, conds["label"][rows], tokens, judges, spec,
                               getattr(test, "thresholds", None), batch_size)
    real = text_agreement(conds["image"], conds["label"], conds.get("caption") if condition == "caption" else None,
                          judges, spec, getattr(test, "thresholds", None), batch_size)
    report.update(agreement)
    report.update({f"{k}_real": v for k, v in real.items() if not k.endswith("_named")})
  report["seconds"] = time.time() - start
  if keep:
    k = min(keep, num_samples)
    report["first_samples"] = {"image": samples[:k], "label": conds["label"][rows[:k]]}
    if "caption" in conds:
      report["first_samples"]["caption"] = conds["caption"][rows[:k]]
  return report


def describe(report: dict) -> str:
  """Lines such as 'test FID 12.3 (floor 0.8), KID 0.0123 ± 0.0010 (floor 0.0002) on 10000 samples ...'."""
  cond = f", conditioned on the test {report['condition']}s" if report.get("condition") else ", unconditional"
  lines = [f"test FID {report['fid']:.3f} (real-vs-real floor {report['fid_floor']:.3f}), "
           f"KID {report['kid']:.5f} ± {report['kid_std']:.5f} (floor {report['kid_floor']:.5f}; standardized "
           f"features) on classifier features: {report['num_samples']} samples{cond}, "
           f"{report['num_reference']} test images, {report['num_floor']} train images for the floor",
           f"sampling: {report['sample_images_per_s']:.2f} images/s (draws of {report['sample_batch_size']}"
           f"{', compile included' if report['sample_speed_includes_compile'] else ''})"]
  if "diversity" in report:
    lines.append(f"diversity (mean feature distance of samples sharing a condition): {report['diversity']:.3f} "
                 f"over {report['diversity_pairs']} pairs (real images: {report['diversity_real']:.3f})")
  agreement = [k for k in report if k.endswith("_agreement") or k == "clip_cosine"]
  if agreement:
    lines.append("text agreement (samples / real test images): " + ", ".join(
        f"{k} {report[k]:.3f} / {report.get(k + '_real', math.nan):.3f}" for k in agreement))
  return "\n".join(lines)
