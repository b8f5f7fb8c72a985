"""Prepared data are tied to their source (raw file hashes), never reused across sources.

A user who prepares Fashion-MNIST-format IDX files from one directory and then
points --config.data.source_dir (or the default) at other files must get the
other files' images: each source is prepared into its own directory, keyed by
the fingerprint of its files, and a file changed in place is prepared again.
"""
import gzip
import multiprocessing
import os

import numpy as np
import pytest

from genfam.data import provenance, sources
from genfam.settings.config_base import base_config


def _write_idx(path, array):
  header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _idx_dir(directory, seed: int, num_train: int, num_test: int) -> dict:
  """Four Fashion-MNIST IDX files of random content in `directory`; -> the arrays written."""
  rng = np.random.default_rng(seed)
  arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (num_train, 28, 28)),
            "train-labels-idx1-ubyte": rng.integers(0, 10, (num_train,)),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (num_test, 28, 28)),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, (num_test,))}
  os.makedirs(directory, exist_ok=True)
  for stem, array in arrays.items():
    _write_idx(os.path.join(directory, stem + ".gz"), array)
  return arrays


def _config(data_dir, source_dir=""):
  c = base_config().data
  c.name, c.data_dir, c.source_dir, c.allow_download = "fashion_mnist", str(data_dir), str(source_dir), False
  return c


def _test_pairs(srcs) -> set:
  """The test split as a set of (image bytes, label): TFDS stores examples in key-hash order."""
  test = srcs["test"]
  return {(test[i]["image"].tobytes(), int(test[i]["label"])) for i in range(len(test))}


def _want_pairs(arrays) -> set:
  return {(x.astype(np.uint8)[..., None].tobytes(), int(y))
          for x, y in zip(arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"])}


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_each_source_reads_its_own_images_and_the_default_its_own(tmp_path, monkeypatch, order):
  dirs = {"a": tmp_path / "a", "b": tmp_path / "b", "default": tmp_path / "default"}
  arrays = {"a": _idx_dir(dirs["a"], 0, 12, 5), "b": _idx_dir(dirs["b"], 1, 9, 7),
            "default": _idx_dir(dirs["default"], 2, 8, 6)}
  monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(dirs["default"]))
  data_dir = tmp_path / "tfds"
  seen = {}
  for name in [*order, "default"]:
    loaded = sources.load(_config(data_dir, "" if name == "default" else dirs[name]))
    assert (loaded.spec.num_train, loaded.spec.num_test) == (len(arrays[name]["train-labels-idx1-ubyte"]),
                                                             len(arrays[name]["t10k-labels-idx1-ubyte"])), name
    assert _test_pairs(loaded.sources) == _want_pairs(arrays[name]), name
    assert loaded.provenance.source == os.path.realpath(dirs[name])
    assert (loaded.provenance.num_train, loaded.provenance.num_test) == (loaded.spec.num_train, loaded.spec.num_test)
    assert [f["name"] for f in loaded.provenance.files] == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz"]
    seen[name] = loaded.provenance
  assert len({p.fingerprint for p in seen.values()}) == 3
  assert len({p.prepared_dir for p in seen.values()}) == 3
  # The same source again reuses its prepared data (nothing is prepared twice).
  again = sources.load(_config(data_dir, dirs["a"])).provenance
  assert again.prepared_dir == seen["a"].prepared_dir
  assert provenance.read_manifest(again.prepared_dir)["prepared_from"] == os.path.realpath(dirs["a"])


def test_a_copy_of_the_same_files_reuses_the_cache(tmp_path):
  _idx_dir(tmp_path / "a", 0, 6, 4)
  _idx_dir(tmp_path / "copy", 0, 6, 4)
  first = sources.load(_config(tmp_path / "tfds", tmp_path / "a")).provenance
  second = sources.load(_config(tmp_path / "tfds", tmp_path / "copy")).provenance
  assert first.fingerprint == second.fingerprint and first.prepared_dir == second.prepared_dir
  assert second.source == os.path.realpath(tmp_path / "copy")  # the run names where it read from now


def test_a_raw_file_changed_in_place_is_prepared_again(tmp_path):
  source = tmp_path / "src"
  _idx_dir(source, 0, 6, 4)
  before = sources.load(_config(tmp_path / "tfds", source))
  changed = _idx_dir(source, 3, 6, 4)  # same paths, same sizes, other bytes
  after = sources.load(_config(tmp_path / "tfds", source))
  assert after.provenance.fingerprint != before.provenance.fingerprint
  assert _test_pairs(after.sources) == _want_pairs(changed) != _test_pairs(before.sources)


def test_digits_provenance_is_stable():
  first = sources.load(_data_digits := _digits_config()).provenance
  assert first.fingerprint == sources.load(_data_digits).provenance.fingerprint
  assert first.source == "scikit-learn's load_digits" and (first.num_train, first.num_test) == (1437, 360)


def _digits_config():
  c = base_config().data
  c.name = "digits"
  return c


def _load_in_child(args):
  data_dir, source_dir = args
  return sorted(_test_pairs(sources.load(_config(data_dir, source_dir)).sources))


@pytest.mark.slow
def test_two_processes_preparing_two_sources_at_once_get_their_own(tmp_path):
  arrays = {name: _idx_dir(tmp_path / name, seed, 10, 5) for seed, name in enumerate(["a", "b"])}
  data_dir = tmp_path / "tfds"
  jobs = [(str(data_dir), str(tmp_path / name)) for name in ["a", "b", "a", "b"]]
  with multiprocessing.get_context("spawn").Pool(4) as pool:
    results = pool.map(_load_in_child, jobs)
  for (_, source), got in zip(jobs, results):
    assert set(got) == _want_pairs(arrays[os.path.basename(source)])
  # One prepared directory per source, each holding one complete version.
  prepared = sorted(os.listdir(data_dir / "fashion_mnist_local"))
  assert len(prepared) == 2 and all(p.startswith("src-") for p in prepared)


def test_a_download_records_its_urls_and_the_files_it_fetched(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds

  from genfam.data import builders
  arrays = _idx_dir(tmp_path / "raw", 5, 6, 4)
  files = {builders.MnistDownload.URL_BASE + stem + ".gz": str(tmp_path / "raw" / (stem + ".gz")) for stem in arrays}
  monkeypatch.setattr(tfds.download.DownloadManager, "download",
                      lambda self, urls: {k: files[u] for k, u in urls.items()})
  c = _config(tmp_path / "tfds")
  c.name, c.allow_download = "mnist", True
  first = sources.load(c).provenance
  assert first.source == " ".join(builders.MnistDownload.urls())
  assert {f["sha256"] for f in first.files} == {provenance.file_fingerprint(p)["sha256"] for p in files.values()}
  # Reused without downloading: the manifest stored beside the data still names the files.
  monkeypatch.setattr(tfds.download.DownloadManager, "download", lambda self, urls: 1 / 0)
  again = sources.load(c).provenance
  assert again.files == first.files and again.prepared_dir == first.prepared_dir


def test_a_validation_split_is_held_out_of_training():
  c = _digits_config()
  whole = sources.load(c)
  c.validation_examples = 100
  held = sources.load(c)
  assert (held.spec.num_train, len(held.sources["validation"])) == (1337, 100)
  assert held.provenance.num_validation == 100 and "100 validation (held out of train)" in held.provenance.describe()
  train_images = {held.sources["train"][i]["image"].tobytes() for i in range(1337)}
  validation = [held.sources["validation"][i] for i in range(100)]
  assert not any(r["image"].tobytes() in train_images for r in validation)
  # The same records as the whole split's last 100, with their attributes; thresholds of the whole split.
  for i, r in enumerate(validation):
    np.testing.assert_array_equal(r["image"], whole.sources["train"][1337 + i]["image"])
    np.testing.assert_array_equal(r["attributes"], whole.sources["train"][1337 + i]["attributes"])
  assert held.sources["validation"].thresholds == whole.sources["train"].thresholds
