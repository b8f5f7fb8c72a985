"""The data pipeline: builders, specs, shuffling, sharding arithmetic, eval padding."""
import os

import numpy as np
import pytest

from genfam.config_base import base_config
from genfam.data import builders, pipeline, sources
from genfam.errors import GenfamError


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
