"""The data pipeline: builders, specs, shuffling, sharding arithmetic, eval padding."""
import os

import numpy as np
import pytest

from genfam.data import builders, pipeline, sources
from genfam.errors import GenfamError
from genfam.settings.config_base import base_config


def _data_config(name):
  c = base_config().data
  c.name = name
  return c


def test_digits_splits_and_levels():
  spec, srcs = sources.data_sources(_data_config("digits"))
  assert (spec.image_shape, spec.num_bins, spec.num_dims) == ((8, 8, 1), 17, 64)
  assert (len(srcs["train"]), len(srcs["test"])) == (spec.num_train, spec.num_test) == (1437, 360)
  images = np.stack([srcs["test"][i]["image"] for i in range(len(srcs["test"]))])
  assert images.dtype == np.uint8 and images.max() == 16


@pytest.mark.slow
@pytest.mark.skipif(sources.fashion_mnist_source_dir() is None, reason="Fashion-MNIST IDX files not installed")
def test_fashion_mnist_from_local_idx_files():
  directory = sources.fashion_mnist_source_dir()
  test_images = builders.read_idx(builders.find_idx_file(directory, "t10k-images-idx3-ubyte"))
  assert test_images.shape == (10000, 28, 28) and test_images.dtype == np.uint8
  spec, srcs = sources.data_sources(_data_config("fashion_mnist"))
  assert (len(srcs["train"]), len(srcs["test"])) == (60000, 10000) and spec.num_dims == 784
  record = srcs["test"][0]
  assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8


def test_train_loader_is_seeded_and_resumable():
  _, srcs = sources.data_sources(_data_config("digits"))
  first = [next(it)["label"] for it in [iter(pipeline.train_loader(srcs["train"], 32, seed=3))] for _ in range(3)]
  again = iter(pipeline.train_loader(srcs["train"], 32, seed=3))
  np.testing.assert_array_equal(next(again)["label"], first[0])
  state = pipeline.loader_state(again)
  expected = [next(again)["label"] for _ in range(2)]
  restored = iter(pipeline.train_loader(srcs["train"], 32, seed=3))
  pipeline.restore_loader_state(restored, state)
  for want in expected:
    np.testing.assert_array_equal(next(restored)["label"], want)
  other = iter(pipeline.train_loader(srcs["train"], 32, seed=4))
  assert not np.array_equal(next(other)["label"], first[0])


def test_train_loader_covers_an_epoch_without_repeats():
  _, srcs = sources.data_sources(_data_config("digits"))
  it = iter(pipeline.train_loader(srcs["train"], 479, seed=0))  # 3 batches = exactly one epoch
  images = np.concatenate([next(it)["image"] for _ in range(3)]).reshape(1437, -1)
  all_images = np.stack([srcs["train"][i]["image"] for i in range(1437)]).reshape(1437, -1)
  key = lambda a: sorted(map(bytes, a))
  assert key(images) == key(all_images)


def test_eval_batches_pad_and_mask():
  _, srcs = sources.data_sources(_data_config("digits"))
  batches = list(pipeline.eval_batches(srcs["test"], 100, num_examples=250))
  assert [b["image"].shape[0] for b, _ in batches] == [100, 100, 100]
  assert [int(m.sum()) for _, m in batches] == [100, 100, 50]
  np.testing.assert_array_equal(batches[0][0]["label"][:5], [srcs["test"][i]["label"] for i in range(5)])


def _as_process(monkeypatch, index: int, count: int):
  """The pipeline sees itself as process `index` of `count`."""
  monkeypatch.setattr(pipeline.jax, "process_index", lambda *a: index)
  monkeypatch.setattr(pipeline.jax, "process_count", lambda *a: count)


@pytest.mark.parametrize("count", [2, 4])
def test_eval_batches_do_not_depend_on_the_process_count(monkeypatch, count):
  """Process p's rows of evaluation batch k are rows [p b, (p + 1) b) of the one-process batch
  k, padding and mask included, so per-row noise (AIS, dequantization) meets the same example."""
  _, srcs = sources.data_sources(_data_config("digits"))

  def batches(p, n):
    _as_process(monkeypatch, p, n)
    return list(pipeline.eval_batches(srcs["test"], 16, num_examples=37))

  want = batches(0, 1)
  assert [int(m.sum()) for _, m in want] == [16, 16, 5]
  for p in range(count):
    got = batches(p, count)
    assert len(got) == len(want)
    rows = slice(p * 16 // count, (p + 1) * 16 // count)
    for (batch, mask), (one, one_mask) in zip(got, want):
      np.testing.assert_array_equal(mask, one_mask[rows])
      np.testing.assert_array_equal(batch["image"], one["image"][rows])
      np.testing.assert_array_equal(batch["label"], one["label"][rows])


def test_batches_carry_captions_and_attributes(tmp_path):
  plain_spec, plain = sources.data_sources(_data_config("digits"))
  spec, srcs = pipeline.captioned(plain_spec, plain, str(tmp_path))  # as-is if data_sources already captions
  L, A = spec.caption_length, spec.num_attributes
  batch = next(iter(pipeline.train_loader(srcs["train"], 32, seed=3)))
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      "image": ((32, 8, 8, 1), np.uint8), "label": ((32,), np.int32),
      "attributes": ((32, A), np.int32), "caption": ((32, L), np.int32)}
  assert ((batch["caption"] >= 0) & (batch["caption"] < spec.vocab_size)).all()
  assert (batch["caption"][:, 0] > 1).all()
  assert all((batch["attributes"][:, a] < len(v)).all() for a, v in enumerate(spec.attribute_values))
  if not isinstance(plain["train"], pipeline.CaptionedSource):  # images and labels as without captions
    bare = next(iter(pipeline.train_loader(plain["train"], 32, seed=3)))
    for k in ("image", "label"):
      np.testing.assert_array_equal(batch[k], bare[k])
  (test_batch, mask), = list(pipeline.eval_batches(srcs["test"], 400))
  assert test_batch["caption"].shape == (400, L) and test_batch["attributes"].shape == (400, A) and mask.sum() == 360


def test_unknown_dataset_and_missing_download():
  with pytest.raises(GenfamError, match="unknown dataset 'cifar100'.*known: cifar10, digits"):
    sources.data_sources(_data_config("cifar100"))
  c = _data_config("mnist")
  c.allow_download = False
  with pytest.raises(GenfamError, match="allow_download=True on a machine with network"):
    sources.data_sources(c)


def test_batch_larger_than_the_split():
  _, srcs = sources.data_sources(_data_config("digits"))
  with pytest.raises(GenfamError, match="larger than the 1437 training examples"):
    pipeline.train_loader(srcs["train"], 2048, seed=0)


def _write_idx(path, array):
  """Writes an unsigned-byte IDX file (gzipped), the format of (Fashion-)MNIST's files."""
  import gzip
  header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _fake_downloads(monkeypatch, files: dict):
  """TFDS's DownloadManager.download answers from local files {url: path} (no network)."""
  import tensorflow_datasets as tfds

  def download(self, url_or_urls):
    if isinstance(url_or_urls, dict):
      return {k: files[u] for k, u in url_or_urls.items()}
    return files[url_or_urls]

  monkeypatch.setattr(tfds.download.DownloadManager, "download", download)


@pytest.mark.parametrize("name, builder", [("mnist", builders.MnistDownload),
                                           ("fashion_mnist", builders.FashionMnistDownload)])
def test_downloaded_idx_datasets_are_prepared_without_tensorflow(tmp_path, monkeypatch, name, builder):
  rng = np.random.default_rng(0)
  arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
            "train-labels-idx1-ubyte": rng.integers(0, 10, (6,)),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, (4,))}
  files = {}
  for stem, array in arrays.items():
    _write_idx(tmp_path / f"{stem}.gz", array)
    files[builder.URL_BASE + stem + ".gz"] = str(tmp_path / f"{stem}.gz")
  _fake_downloads(monkeypatch, files)
  c = _data_config(name)
  c.data_dir = str(tmp_path / "tfds")
  c.source_dir = ""
  monkeypatch.setattr(sources, "fashion_mnist_source_dir", lambda source_dir="": None)  # no local files
  spec, srcs = sources.data_sources(c)
  assert spec.image_shape == (28, 28, 1) and (len(srcs["train"]), len(srcs["test"])) == (6, 4)
  records = [srcs["test"][i] for i in range(4)]
  assert all(r["image"].dtype == np.uint8 and r["image"].shape == (28, 28, 1) for r in records)
  # TFDS stores examples in the order of its key hashes: compare (image, label) pairs as sets.
  assert {(r["image"].tobytes(), int(r["label"])) for r in records} == \
      {(x.astype(np.uint8)[..., None].tobytes(), int(y))
       for x, y in zip(arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"])}


def test_downloaded_cifar10_is_prepared_without_tensorflow(tmp_path, monkeypatch):
  import io
  import tarfile
  rng = np.random.default_rng(1)
  images = {}  # name -> (images [n, 32, 32, 3], labels [n])
  archive = tmp_path / "cifar-10-binary.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    for name in builders.CIFAR10_FILES["train"] + builders.CIFAR10_FILES["test"]:
      x, y = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8), rng.integers(0, 10, (2,)).astype(np.uint8)
      images[name] = (x, y)
      records = np.concatenate([y[:, None], x.transpose(0, 3, 1, 2).reshape(2, -1)], axis=1)  # CHW, label first
      data = records.astype(np.uint8).tobytes()
      info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  _fake_downloads(monkeypatch, {builders.CIFAR10_URL: str(archive)})
  c = _data_config("cifar10")
  c.data_dir = str(tmp_path / "tfds")
  spec, srcs = sources.data_sources(c)
  assert spec.image_shape == (32, 32, 3) and (len(srcs["train"]), len(srcs["test"])) == (10, 2)
  # TFDS stores examples in the order of its key hashes: compare (image, label) pairs as sets.
  for split, names in builders.CIFAR10_FILES.items():
    got = {(srcs[split][i]["image"].tobytes(), int(srcs[split][i]["label"])) for i in range(len(srcs[split]))}
    want = {(x[i].tobytes(), int(y[i])) for name in names for x, y in [images[name]] for i in range(2)}
    assert got == want


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds

  def offline(self, url_or_urls):
    raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

  monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
  c = _data_config("mnist")
  c.data_dir = str(tmp_path / "tfds")
  with pytest.raises(GenfamError, match=r"dataset 'mnist' could not be downloaded \(Failed to resolve.*needs network"):
    sources.data_sources(c)


@pytest.mark.parametrize("count", [2, 4])
def test_global_batches_do_not_depend_on_the_process_count(monkeypatch, count):
  """Process p's rows of global batch t are rows [p b, (p + 1) b) of the one-process batch t,
  and a loader state saved on one process count restores on another at the same batch."""
  _, srcs = sources.data_sources(_data_config("digits"))

  def loader(p, n):
    _as_process(monkeypatch, p, n)
    return iter(pipeline.train_loader(srcs["train"], 16, seed=4))

  one = loader(0, 1)
  want = [next(one) for _ in range(100)]  # > one epoch of 1437 records
  state = pipeline.loader_state(one)
  for p in range(count):
    it = loader(p, count)
    for t in range(100):
      got = next(it)
      rows = slice(p * 16 // count, (p + 1) * 16 // count)
      np.testing.assert_array_equal(got["image"], want[t]["image"][rows])
      np.testing.assert_array_equal(got["label"], want[t]["label"][rows])
    it = loader(p, count)
    pipeline.restore_loader_state(it, state)  # saved by one process, restored by process p of `count`
    expected = next(_after(loader(0, 1), 100))  # (the restored iterator keeps its process index)
    np.testing.assert_array_equal(next(it)["label"], expected["label"][p * 16 // count:(p + 1) * 16 // count])


def _after(iterator, n):
  for _ in range(n):
    next(iterator)
  return iterator
