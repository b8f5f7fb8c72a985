"""Captions made from pixels: measured attributes, phrasings, and the closed vocabulary.

The datasets carry labels, not text. Each example's caption is its class name
plus attributes measured from its own pixels, in one of several phrasings:

  "a dark, wide pullover", "a pullover that is wide and dark", "a small plain sandal"

Attributes (`measure`, all vectorised over [N, H, W, C] uint8):
- Pixels are luminance (0.299 R + 0.587 G + 0.114 B for colour) divided by the
  top level K - 1, so 0..1 for every dataset (8x8 digits with K = 17 included).
  Background is every pixel below BACKGROUND = 0.1 of the top level; the rest
  is the object. (On CIFAR-10 nearly every pixel is "object": there the
  attributes describe the whole picture.)
- brightness: mean intensity of the object's pixels -> dark / mid / light.
- size: share of the image's pixels that are object -> small / medium / large.
- width: log of the ratio of the object's horizontal to vertical spread (the
  standard deviations of its pixels' column and row) -> narrow / wide.
- texture: mean |x - mean of its 4 neighbours| over the object's interior
  (the object with holes up to 1 px closed, then eroded by 1 px, so its
  outline does not count as texture) -> plain / patterned.
Each attribute's classes are cut at quantiles of the TRAIN split (tertiles,
or the median for two classes): `fit_thresholds`. A value equal to a cut
falls in the lower class. The cuts are stored as JSON beside the prepared
dataset (`load_or_fit_thresholds`), so the test split is described with the
train split's cuts.

Phrasing: `caption_text(class_name, attributes, rng)`; which attributes are
named (each with probability 0.7), in which order and which of five templates
is used are drawn from `caption_rng(seed, index, epoch)`, so one example's
caption is a function of (seed, its index in its split, epoch, label,
attributes) alone: `example_caption`.

Tokens: lowercase words; a word is a run of letters and digits, possibly
joined by inner hyphens ("t-shirt" is one word); everything else separates
words and is dropped. Multi-word class names are several words ("ankle boot"
-> "ankle", "boot"), digit classes read "digit 7". Id 0 is "<pad>" (captions
are right-padded), id 1 "<unk>". The vocabulary is append-only: token ids live
in checkpoints of text models.
"""
import json
import logging
import os
import re
import warnings

import numpy as np

from genfam.errors import GenfamError

PAD, UNK = "<pad>", "<unk>"
CAPTION_LENGTH = 16
ATTRIBUTE_NAMES = ("brightness", "size", "width", "texture")
ATTRIBUTE_VALUES = (("dark", "mid", "light"), ("small", "medium", "large"), ("narrow", "wide"),
                    ("plain", "patterned"))
FUNCTION_WORDS = ("a", "an", "the", "of", "that", "is", "and", "this", "photo", "picture", "image", "with",
                  "it", "one", "digit")
CLASS_WORDS = (
    # Fashion-MNIST
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle", "boot",
    # digits and MNIST ("digit 7")
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    # CIFAR-10
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Append new words at the end only: ids are positions.
VOCABULARY = (PAD, UNK) + FUNCTION_WORDS + tuple(v for values in ATTRIBUTE_VALUES for v in values) + \
    ATTRIBUTE_NAMES + CLASS_WORDS

BACKGROUND = 0.1          # pixels below this fraction of the top level are background
INCLUDE_PROBABILITY = 0.7  # each attribute is named in a caption with this probability
THRESHOLDS_FILE = "caption_thresholds.json"
THRESHOLDS_VERSION = 1     # bump when `measure` changes: stored cuts of another version are refit

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


# ----------------------------------------------------------------------------- words and tokens

def words(sentence: str) -> list[str]:
  """The lowercase words of `sentence` (punctuation dropped, inner hyphens kept)."""
  return _WORD.findall(sentence.lower())


def class_words(class_name: str) -> tuple[str, ...]:
  """How a class is named in a caption: its words; a digit class 'd' reads 'digit d'."""
  return ("digit", class_name) if class_name.isdigit() else tuple(words(class_name))


def _word_ids(spec) -> dict:
  return {w: i for i, w in enumerate(spec.vocabulary)}


def tokenize(sentence: str, spec) -> tuple[np.ndarray, list[str]]:
  """-> (tokens int32 [L] right-padded with 0, the words not in the vocabulary (as <unk>, id 1)).

  L = spec.caption_length; a sentence of more than L words is a GenfamError.
  """
  ids = _word_ids(spec)
  ws = words(sentence)
  if len(ws) > spec.caption_length:
    raise GenfamError(f"sentence {sentence!r} has {len(ws)} words, more than the caption length "
                      f"{spec.caption_length}: shorten it")
  tokens = np.zeros(spec.caption_length, np.int32)  # [L]
  tokens[:len(ws)] = [ids.get(w, 1) for w in ws]
  return tokens, [w for w in ws if w not in ids]


def encode_sentence(sentence: str, spec) -> np.ndarray:
  """A user's sentence -> tokens int32 [L]; warns of unknown words, errors if no word is known."""
  tokens, unknown = tokenize(sentence, spec)
  if not np.any(tokens > 1):
    known = ", ".join(w for w in spec.vocabulary[2:] if w not in FUNCTION_WORDS)
    raise GenfamError(f"no word of {sentence!r} is in the caption vocabulary (unknown: "
                      f"{', '.join(unknown) or 'none'}): use words such as {known[:160]}...")
  if unknown:
    warnings.warn(f"words not in the caption vocabulary, read as {UNK}: {', '.join(unknown)}", stacklevel=2)
  return tokens


def decode(tokens, spec) -> str:
  """tokens int [L] -> the words they stand for, padding dropped."""
  return " ".join(spec.vocabulary[int(t)] for t in np.asarray(tokens).reshape(-1) if int(t) != 0)


# ----------------------------------------------------------------------------- attributes

def luminance(images: np.ndarray, num_bins: int) -> np.ndarray:
  """uint8 [N, H, W, C] with levels 0..K-1 -> float32 [N, H, W] in [0, 1]."""
  x = np.asarray(images, np.float32)
  if x.shape[-1] == 3:
    x = x @ np.array([0.299, 0.587, 0.114], np.float32)
  elif x.shape[-1] == 1:
    x = x[..., 0]
  else:
    raise GenfamError(f"images of {x.shape[-1]} channels cannot be captioned: use 1 (grey) or 3 (RGB) channels")
  return x * np.float32(1.0 / (num_bins - 1))


def _shifts(mask: np.ndarray, fill, square: bool) -> list[np.ndarray]:
  """The 4 (or 8) neighbours of every pixel of [N, H, W], `fill` outside the image."""
  p = np.pad(mask, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
  h, w = mask.shape[1:]
  offsets = [(0, 1), (2, 1), (1, 0), (1, 2)] + ([(0, 0), (0, 2), (2, 0), (2, 2)] if square else [])
  return [p[:, i:i + h, j:j + w] for i, j in offsets]


def _measure_chunk(x: np.ndarray) -> np.ndarray:
  """x float32 [n, H, W] in [0, 1] -> raw measures float64 [n, 4] (brightness, size, width, texture)."""
  n, h, w = x.shape
  fg = x >= BACKGROUND                                         # [n, H, W] bool
  count = fg.sum((1, 2)).astype(np.float64)                    # [n]
  safe = np.maximum(count, 1.0)
  brightness = np.where(fg, x, 0).sum((1, 2), dtype=np.float64) / safe
  size = count / (h * w)
  rows = fg.sum(2).astype(np.float64)                          # [n, H]
  cols = fg.sum(1).astype(np.float64)                          # [n, W]
  r, c = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
  var_r = (rows * r ** 2).sum(1) / safe - ((rows * r).sum(1) / safe) ** 2
  var_c = (cols * c ** 2).sum(1) / safe - ((cols * c).sum(1) / safe) ** 2
  width = 0.5 * np.log((np.maximum(var_c, 0) + 1 / 12) / (np.maximum(var_r, 0) + 1 / 12))  # 1/12: a pixel's own spread
  closed = np.logical_or.reduce([fg] + _shifts(fg, False, True))
  closed = np.logical_and.reduce([closed] + _shifts(closed, False, True))
  interior = np.logical_and.reduce([closed] + _shifts(closed, False, False))
  laplace = np.abs(x - 0.25 * sum(_shifts(x, 0.0, False)))    # [n, H, W]
  inner = interior.sum((1, 2))
  texture = np.where(interior, laplace, 0).sum((1, 2), dtype=np.float64) / np.maximum(inner, 1)
  return np.stack([brightness, size, width, texture], 1)


def measure(images: np.ndarray, num_bins: int, chunk: int = 4096) -> np.ndarray:
  """uint8 [N, H, W, C] -> raw attribute measures float64 [N, A] (columns as ATTRIBUTE_NAMES)."""
  images = np.asarray(images)
  if images.ndim != 4:
    raise GenfamError(f"images of shape {images.shape} cannot be measured: pass [N, H, W, C] uint8")
  out = [_measure_chunk(luminance(images[s:s + chunk], num_bins)) for s in range(0, len(images), chunk)]
  return np.concatenate(out) if out else np.zeros((0, len(ATTRIBUTE_NAMES)))


def fit_thresholds(train_images: np.ndarray, num_bins: int) -> dict:
  """Cuts of each attribute at quantiles of `train_images` (uint8 [N, H, W, C], TRAIN split only).

  -> {'version', 'num_bins', 'num_train', 'background', 'cuts': {name: [K_a - 1 floats]}}, JSON-able.
  """
  values = measure(train_images, num_bins)  # [N, A]
  cuts = {name: [float(q) for q in np.quantile(values[:, a], np.arange(1, len(v)) / len(v))]
          for a, (name, v) in enumerate(zip(ATTRIBUTE_NAMES, ATTRIBUTE_VALUES))}
  return {"version": THRESHOLDS_VERSION, "num_bins": int(num_bins), "num_train": int(len(train_images)),
          "background": BACKGROUND, "cuts": cuts}


def measure_attributes(images: np.ndarray, num_bins: int, thresholds: dict) -> np.ndarray:
  """uint8 [N, H, W, C] -> attribute classes int32 [N, A]: column a indexes ATTRIBUTE_VALUES[a]."""
  values = measure(images, num_bins)  # [N, A]
  columns = [np.searchsorted(np.asarray(thresholds["cuts"][name]), values[:, a], side="left")
             for a, name in enumerate(ATTRIBUTE_NAMES)]
  return np.stack(columns, 1).astype(np.int32).reshape(-1, len(ATTRIBUTE_NAMES))


def _thresholds_problem(thresholds, num_train: int, num_bins: int) -> str:
  """Why stored thresholds do not fit this dataset and code ('' if they do)."""
  if not isinstance(thresholds, dict) or not isinstance(thresholds.get("cuts"), dict):
    return "not a thresholds record"
  for key, want in (("version", THRESHOLDS_VERSION), ("num_bins", num_bins), ("num_train", num_train),
                    ("background", BACKGROUND)):
    if thresholds.get(key) != want:
      return f"{key} is {thresholds.get(key)!r}, not {want!r}"
  for name, values in zip(ATTRIBUTE_NAMES, ATTRIBUTE_VALUES):
    cuts = thresholds["cuts"].get(name)
    if not isinstance(cuts, list) or len(cuts) != len(values) - 1 or cuts != sorted(cuts):
      return f"the cuts of {name!r} are {cuts!r}"
  return ""


def load_or_fit_thresholds(directory: str, train_images: np.ndarray, num_bins: int) -> dict:
  """The thresholds stored in `directory`/caption_thresholds.json if they fit, else fitted on
  `train_images` (uint8 [N, H, W, C], the train split) and written there atomically.

  A file of another version, dataset size or level count, or an unreadable one,
  is refitted and replaced (with a warning); a directory that cannot be written
  keeps the fitted thresholds in memory only (with a warning).
  """
  path = os.path.join(directory, THRESHOLDS_FILE)
  if os.path.exists(path):
    try:
      with open(path) as f:
        stored = json.load(f)
      problem = _thresholds_problem(stored, len(train_images), num_bins)
    except (OSError, ValueError) as e:
      problem = f"unreadable: {e}"
    if not problem:
      return stored
    logging.warning("caption thresholds in %s do not fit (%s); fitting them again on the train split", path, problem)
  thresholds = fit_thresholds(train_images, num_bins)
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    os.makedirs(directory, exist_ok=True)
    with open(tmp, "w") as f:
      json.dump(thresholds, f, indent=1)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("could not store caption thresholds in %s (%s); using them from memory", path, e)
  return thresholds


# ----------------------------------------------------------------------------- phrasing

def caption_rng(seed: int, index: int, epoch: int) -> np.random.Generator:
  """The generator of one example's phrasing: Philox keyed by (seed, index in split, epoch)."""
  if not (0 <= seed < 2**64 and 0 <= index < 2**32 and 0 <= epoch < 2**32):
    raise GenfamError(f"caption key (seed {seed}, index {index}, epoch {epoch}) out of range: use a seed >= 0")
  return np.random.Generator(np.random.Philox(key=(int(seed) << 64) | (int(index) << 32) | int(epoch)))


def _and(ws: list[str]) -> str:
  return ws[0] if len(ws) == 1 else ", ".join(ws[:-1]) + " and " + ws[-1]


def _article(next_word: str) -> str:
  return "an" if next_word[0] in "aeiou" else "a"


def caption_text(class_name: str, attributes, rng: np.random.Generator) -> str:
  """One caption of an example of class `class_name` with attribute classes int [A], drawn with `rng`.

  Each attribute is named with probability INCLUDE_PROBABILITY, in a random
  order, in one of five templates ("a dark, wide pullover", "a pullover that
  is wide and dark", "a photo of a ...", "this pullover is ...", "a dark
  pullover that is wide and plain"); with no attribute named, "a pullover" or
  "a photo of a pullover".
  """
  u = rng.random(1 + 2 * len(ATTRIBUTE_NAMES))  # [1 + 2A]: template, inclusion, order
  A = len(ATTRIBUTE_NAMES)
  order = np.argsort(u[1 + A:])
  adjectives = [ATTRIBUTE_VALUES[a][int(attributes[a])] for a in order if u[1 + a] < INCLUDE_PROBABILITY]
  noun = " ".join(class_words(class_name))
  template = int(u[0] * 5)
  if not adjectives:
    template = 2 if template in (2, 3) else 0
  elif len(adjectives) == 1 and template == 4:
    template = 1
  if template == 0:
    before = ", ".join(adjectives + [noun])
    return f"{_article(before)} {before}"
  if template == 1:
    return f"{_article(noun)} {noun} that is {_and(adjectives)}"
  if template == 2:
    before = ", ".join(adjectives + [noun])
    return f"a photo of {_article(before)} {before}"
  if template == 3:
    return f"this {noun} is {_and(adjectives)}"
  before = f"{adjectives[0]} {noun}"
  return f"{_article(before)} {before} that is {_and(adjectives[1:])}"


def example_caption(spec, seed: int, index: int, epoch: int, label: int, attributes) -> np.ndarray:
  """The caption tokens int32 [L] of example `index` of its split in `epoch`: a function of
  (seed, index, epoch, label, attributes [A]) alone."""
  text = caption_text(spec.class_names[int(label)], attributes, caption_rng(seed, index, epoch))
  return caption_tokens(text, spec)


_TOKEN_CACHE: dict = {}


def caption_tokens(text: str, spec) -> np.ndarray:
  """Tokens int32 [L] of a generated caption (every word known; cached per vocabulary)."""
  key = (text, spec.vocabulary, spec.caption_length)
  tokens = _TOKEN_CACHE.get(key)
  if tokens is None:
    tokens, unknown = tokenize(text, spec)
    if unknown:
      raise GenfamError(f"caption {text!r} has words outside the vocabulary ({', '.join(unknown)}): add them to "
                        f"genfam/data/captions.py's VOCABULARY")
    if len(_TOKEN_CACHE) < 200_000:
      _TOKEN_CACHE[key] = tokens
  return tokens.copy()
