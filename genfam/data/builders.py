"""TFDS builders of our own, preparing `array_record` files without TensorFlow.

Features are `Tensor`s of uint8 (not `tfds.features.Image`, whose encoder needs
TF), so a prepared split is read back by `as_data_source` with random access.

- FashionMnistLocal: the four IDX files of Debian's `dataset-fashion-mnist`
  (or any directory holding them).
- Digits: scikit-learn's 8x8 digits (17 grey levels 0..16), split 1437 / 360.
"""
import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle boot")
DIGITS_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGITS_NUM_TEST = 360


def _image_label_features(shape):
  return tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=shape, dtype=np.uint8),
      "label": tfds.features.Scalar(dtype=np.int32),
  })


def find_idx_file(directory: str, stem: str) -> str | None:
  """The IDX file `stem` in `directory`, gzipped or not; None if absent."""
  for name in (stem + ".gz", stem):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  return None


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (optionally gzipped) of unsigned bytes."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  magic = int.from_bytes(data[:4], "big")
  if magic >> 8 != 0x08:  # 0x08: unsigned byte
    raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
  ndim = magic & 0xFF
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (28x28x1, 60k/10k) from local IDX files in `source_dir`."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, source_dir: str, **kwargs):
    self._source_dir = source_dir
    super().__init__(**kwargs)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=_image_label_features((28, 28, 1)),
                                 description="Fashion-MNIST read from local IDX files.")

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(*files) for split, files in FASHION_MNIST_FILES.items()}

  def _generate_examples(self, images_stem, labels_stem):
    images = read_idx(find_idx_file(self._source_dir, images_stem))
    labels = read_idx(find_idx_file(self._source_dir, labels_stem))
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image[..., None], "label": np.int32(label)}


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 digits: pixels 0..16 (17 levels), 1437 train / 360 test."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=_image_label_features((8, 8, 1)),
                                 description="scikit-learn digits, 17 grey levels.")

  def _split_generators(self, dl_manager):
    from sklearn.datasets import load_digits
    digits = load_digits()
    order = np.random.RandomState(0).permutation(len(digits.target))
    test, train = order[:DIGITS_NUM_TEST], order[DIGITS_NUM_TEST:]
    images = digits.images.astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    return {"train": self._generate_examples(images[train], labels[train]),
            "test": self._generate_examples(images[test], labels[test])}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": label}
