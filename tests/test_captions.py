"""Captions: attributes measured from pixels, thresholds, phrasing determinism, the tokenizer."""
import collections
import json
import os

import jax
import numpy as np
import pytest

from genfam.data import captions, pipeline, sources
from genfam.errors import GenfamError

# Hand-set cuts for the synthetic images below (fitted cuts are tested separately).
CUTS = {"version": captions.THRESHOLDS_VERSION, "num_bins": 256, "num_train": 0, "background": captions.BACKGROUND,
        "cuts": {"brightness": [0.4, 0.7], "size": [0.1, 0.3], "width": [0.0], "texture": [0.05]}}


def _named(attributes):
  """int [A] -> {'brightness': 'dark', ...}."""
  return {n: v[int(a)] for n, v, a in zip(captions.ATTRIBUTE_NAMES, captions.ATTRIBUTE_VALUES, attributes)}


def _canvas(h=28, w=28, c=1):
  return np.zeros((h, w, c), np.uint8)


def test_attributes_of_synthetic_images():
  blob = _canvas()
  blob[12:16, 12:16] = 60                     # 16 px of 60/255: dark, small
  wide = _canvas()
  wide[7:21, 1:27] = 240                      # 26 x 14 bright rectangle: light, large, wide, plain
  tall = _canvas()
  tall[2:26, 10:18] = 150                     # 8 x 24: narrow, mid
  checker = _canvas()
  checker[4:24, 4:24] = np.where(np.add.outer(np.arange(20), np.arange(20)) % 2, 250, 120)[..., None]
  checker_black = _canvas()
  checker_black[4:24, 4:24] = (np.add.outer(np.arange(20), np.arange(20)) % 2 * 255)[..., None]
  flat = _canvas()
  flat[4:24, 4:24] = 185
  got = [_named(a) for a in captions.measure_attributes(np.stack([blob, wide, tall, checker, checker_black, flat]),
                                                        256, CUTS)]
  assert got[0]["brightness"] == "dark" and got[0]["size"] == "small"
  assert [got[1][n] for n in captions.ATTRIBUTE_NAMES] == ["light", "large", "wide", "plain"]
  assert (got[2]["width"], got[2]["brightness"]) == ("narrow", "mid")
  assert got[3]["texture"] == "patterned" and got[4]["texture"] == "patterned"
  assert got[5]["texture"] == "plain"
  values = captions.measure(np.stack([blob, wide]), 256)  # [2, A]
  np.testing.assert_allclose(values[:, :2], [[60 / 255, 16 / 784], [240 / 255, 26 * 14 / 784]], rtol=1e-5)


def test_attributes_of_digits_levels_and_colour():
  digit = np.zeros((2, 8, 8, 1), np.uint8)
  digit[0, 1:7, 3:5] = 16                      # a bright upright bar, 17 levels
  digit[1, 3:5, 1:7] = 4                       # a dim flat bar
  got = [_named(a) for a in captions.measure_attributes(digit, 17, CUTS)]
  assert (got[0]["brightness"], got[0]["width"]) == ("light", "narrow")
  assert (got[1]["brightness"], got[1]["width"]) == ("dark", "wide")
  colour = np.zeros((2, 32, 32, 3), np.uint8)
  colour[0, 8:24, 8:24, 0] = 255               # pure red: luminance 0.299 -> dark
  colour[1, 8:24, 8:24] = 255                  # white -> light
  got = [_named(a) for a in captions.measure_attributes(colour, 256, CUTS)]
  assert got[0]["brightness"] == "dark" and got[1]["brightness"] == "light"
  with pytest.raises(GenfamError, match="channels cannot be captioned"):
    captions.measure(np.zeros((1, 4, 4, 2), np.uint8), 256)


class _ArraySource:
  """A split held in arrays, for synthetic data."""

  def __init__(self, images, labels):
    self.images, self.labels = images, labels

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return {"image": self.images[i], "label": self.labels[i]}

  def __repr__(self):
    return f"_ArraySource({len(self)})"


def _synthetic(n, seed=0, shape=(8, 8, 1), levels=17):
  rng = np.random.default_rng(seed)
  images = (rng.random((n,) + shape) * rng.random((n, 1, 1, 1)) * levels).astype(np.uint8)  # unique, varied
  return _ArraySource(images, (np.arange(n) % 10).astype(np.int32))


def test_thresholds_come_from_the_train_split_only(tmp_path):
  spec = sources.dataset_spec("digits")
  train, test = _synthetic(200, 1), _synthetic(50, 2)
  _, a = pipeline.captioned(spec, {"train": train, "test": test}, str(tmp_path / "a"))
  other_test = _synthetic(50, 3)
  _, b = pipeline.captioned(spec, {"train": train, "test": other_test}, str(tmp_path / "b"))
  assert a["test"].thresholds == b["test"].thresholds == captions.fit_thresholds(train.images, 17)
  np.testing.assert_array_equal(a["train"].attributes, b["train"].attributes)
  _, c = pipeline.captioned(spec, {"train": _synthetic(200, 4), "test": test}, str(tmp_path / "c"))
  assert c["test"].thresholds != a["test"].thresholds
  # Balanced classes on train: tertiles / median.
  counts = np.bincount(a["train"].attributes[:, 0], minlength=3)
  assert counts.min() >= 60


def test_thresholds_are_stored_checked_and_refitted(tmp_path):
  images = _synthetic(100, 5).images
  fitted = captions.load_or_fit_thresholds(str(tmp_path), images, 17)
  path = tmp_path / captions.THRESHOLDS_FILE
  assert json.loads(path.read_text()) == fitted
  assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
  stored = dict(fitted, cuts=dict(fitted["cuts"], width=[123.0]))
  path.write_text(json.dumps(stored))
  assert captions.load_or_fit_thresholds(str(tmp_path), images, 17) == stored      # read, not refitted
  assert captions.load_or_fit_thresholds(str(tmp_path), images[:50], 17)["num_train"] == 50  # other data: refit
  path.write_text("{not json")
  assert captions.load_or_fit_thresholds(str(tmp_path), images, 17) == fitted      # unreadable: refit


def test_every_caption_of_every_dataset_tokenizes_without_unknown_words():
  combos = np.stack(np.meshgrid(*[np.arange(len(v)) for v in captions.ATTRIBUTE_VALUES], indexing="ij"), -1)
  combos = combos.reshape(-1, len(captions.ATTRIBUTE_NAMES))  # [36, A]
  texts = set()
  for name in sources.known_datasets():
    spec = sources.dataset_spec(name)
    for label, class_name in enumerate(spec.class_names):
      for k, attributes in enumerate(combos):
        for epoch in range(8):
          text = captions.caption_text(class_name, attributes, captions.caption_rng(7, 100 * label + k, epoch))
          tokens, unknown = captions.tokenize(text, spec)
          assert not unknown and captions.decode(tokens, spec) == " ".join(captions.words(text)), text
          texts.add(text)
  assert {"a photo of a pullover", "a pullover"} & texts and any(" that is " in t for t in texts)
  assert any(t.startswith("an ankle boot") for t in texts) and any("digit 7" in t for t in texts)


def test_sentence_tokenizer_round_trips_and_reports_unknown_words():
  spec = sources.dataset_spec("fashion_mnist")
  with pytest.warns(UserWarning, match="ankle-boot, no"):
    tokens = captions.encode_sentence("A dark, WIDE Ankle-Boot? no: an ankle boot and a T-shirt.", spec)
  assert tokens.shape == (spec.caption_length,) and tokens.dtype == np.int32
  assert captions.decode(tokens, spec) == "a dark wide <unk> <unk> an ankle boot and a t-shirt"
  s = "A pullover that is wide, and dark!"
  assert captions.decode(captions.encode_sentence(s, spec), spec) == "a pullover that is wide and dark"
  _, unknown = captions.tokenize("a zebra in a coat", spec)
  assert unknown == ["zebra", "in"]
  assert captions.tokenize("ankle boot", spec)[0][:3].tolist() == [spec.vocabulary.index("ankle"),
                                                                   spec.vocabulary.index("boot"), 0]


def test_sentence_with_no_known_word_is_a_clear_error():
  spec = sources.dataset_spec("fashion_mnist")
  with pytest.raises(GenfamError, match=r"no word of 'zebra quux!' is in the caption vocabulary "
                                        r"\(unknown: zebra, quux\): use words such as dark"):
    captions.encode_sentence("zebra quux!", spec)
  with pytest.raises(GenfamError, match="no word"):
    captions.encode_sentence("", spec)
  with pytest.raises(GenfamError, match="more than the caption length 16: shorten it"):
    captions.encode_sentence("a " * 17, spec)


def _captioned_synthetic(tmp_path, n=12):
  spec = sources.dataset_spec("digits")
  return pipeline.captioned(spec, {"train": _synthetic(n, 6), "test": _synthetic(8, 7)}, str(tmp_path))


def _captions_per_example(source, batches):
  """{example index: [its captions in the order read]} from batches of a synthetic split (unique images)."""
  index = {source.base.images[i].tobytes(): i for i in range(len(source))}
  seen = collections.defaultdict(list)
  for b in batches:
    for image, caption in zip(b["image"], b["caption"]):
      seen[index[image.tobytes()]].append(tuple(caption.tolist()))
  return dict(seen)


def _read(source, process_index, process_count, num_batches, monkeypatch, global_batch=4, seed=5):
  monkeypatch.setattr(jax, "process_index", lambda *a: process_index)
  monkeypatch.setattr(jax, "process_count", lambda *a: process_count)
  it = iter(pipeline.train_loader(source, global_batch, seed=seed))
  return [next(it) for _ in range(num_batches)]


def test_training_captions_depend_on_seed_example_and_epoch_only(tmp_path, monkeypatch):
  spec, srcs = _captioned_synthetic(tmp_path)
  train = srcs["train"]
  epochs = 3
  one = _captions_per_example(train, _read(train, 0, 1, epochs * 12 // 4, monkeypatch))
  assert sorted(one) == list(range(12)) and all(len(c) == epochs for c in one.values())
  for i, got in one.items():  # the k-th reading of example i is epoch k
    want = [tuple(captions.example_caption(spec, 5, i, e, train.base.labels[i], train.attributes[i]).tolist())
            for e in range(epochs)]
    assert got == want
  assert any(len(set(c)) > 1 for c in one.values())  # epochs phrase differently
  for count in (2, 4):  # simulated processes, each reading its share of every global batch
    merged = collections.defaultdict(list)
    for p in range(count):
      batches = _read(train, p, count, epochs * 12 // 4, monkeypatch)
      for i, c in _captions_per_example(train, batches).items():
        merged[i] += c
    assert {i: sorted(c) for i, c in merged.items()} == {i: sorted(c) for i, c in one.items()}
  other_seed = _captions_per_example(train, _read(train, 0, 1, 3, monkeypatch, seed=6))
  assert any(other_seed[i][0] != one[i][0] for i in other_seed)


def test_resumed_loader_gives_the_same_captions(tmp_path):
  _, srcs = _captioned_synthetic(tmp_path)
  it = iter(pipeline.train_loader(srcs["train"], 4, seed=2))
  for _ in range(5):  # into the second epoch
    next(it)
  state = pipeline.loader_state(it)
  expected = [next(it) for _ in range(6)]
  resumed = iter(pipeline.train_loader(srcs["train"], 4, seed=2))
  pipeline.restore_loader_state(resumed, state)
  for want in expected:
    got = next(resumed)
    for k in ("image", "label", "attributes", "caption"):
      np.testing.assert_array_equal(got[k], want[k])


def test_eval_captions_are_epoch_zero(tmp_path):
  spec, srcs = _captioned_synthetic(tmp_path)
  test = srcs["test"]
  (batch, mask), = list(pipeline.eval_batches(test, 10))
  assert batch["caption"].shape == (10, spec.caption_length) and batch["attributes"].shape == (10, 4)
  for i in range(8):
    np.testing.assert_array_equal(batch["caption"][i], captions.example_caption(
        spec, pipeline.EVAL_CAPTION_SEED, i, 0, test.base.labels[i], test.attributes[i]))
  assert mask.sum() == 8
