"""TFDS builders of our own, preparing `array_record` files without TensorFlow.

Features are `Tensor`s of uint8 (not `tfds.features.Image`, whose encoder needs
TF), so a prepared split is read back by `as_data_source` with random access.
Each builder's `source_identity(...)` says what makes its data what they are
(raw file hashes, URLs, the arrays of a library); `genfam.data.sources` names
the builder config after its hash (`genfam.data.provenance`), so data prepared
from another source never stand in for these.

- FashionMnistLocal: the four IDX files of Debian's `dataset-fashion-mnist`
  (or any directory holding them).
- Digits: scikit-learn's 8x8 digits (17 grey levels 0..16), split 1437 / 360.
- MnistDownload, FashionMnistDownload, Cifar10Download: the standard datasets
  from the raw files their authors publish (the URLs TFDS's own builders use),
  fetched by TFDS's download manager. TFDS's own `mnist` / `cifar10` builders
  would encode every image as PNG with TensorFlow, which genfam does not
  depend on; these store the same pixels as uint8 tensors instead.
"""
import gzip
import os
import tarfile

import numpy as np
import tensorflow_datasets as tfds

from genfam.data.provenance import array_fingerprint, file_fingerprint

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


class _IdxBuilder(tfds.core.GeneratorBasedBuilder):
  """Examples from (Fashion-)MNIST's IDX image/label file pairs (28x28x1)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=_image_label_features((28, 28, 1)),
                                 description=self.__doc__)

  def _generate_examples(self, images_path: str, labels_path: str):
    """(index, {'image': uint8 [28, 28, 1], 'label': int32})."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if len(images) != len(labels):
      raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image[..., None], "label": np.int32(label)}


class FashionMnistLocal(_IdxBuilder):
  """Fashion-MNIST (28x28x1, 60k/10k) from local IDX files in `source_dir`."""

  def __init__(self, *, source_dir: str, **kwargs):
    self._source_dir = source_dir
    super().__init__(**kwargs)

  @staticmethod
  def source_identity(source_dir: str) -> dict:
    """The four IDX files' names, sizes and SHA-256 (not the directory: a copy reuses the cache)."""
    return {"builder": "fashion_mnist_local", "files": local_idx_files(source_dir)}

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(*(find_idx_file(self._source_dir, stem) for stem in stems))
            for split, stems in FASHION_MNIST_FILES.items()}


def local_idx_files(source_dir: str) -> list[dict]:
  """Fingerprints ({'name', 'bytes', 'sha256'}) of the four (Fashion-)MNIST IDX files in `source_dir`."""
  return [file_fingerprint(find_idx_file(source_dir, stem))
          for stems in FASHION_MNIST_FILES.values() for stem in stems]


class _Downloaded:
  """A downloading builder: identified by its URLs; `raw_files` holds the fingerprints
  of the files it downloaded (empty when the prepared data were reused)."""

  def __init__(self, **kwargs):
    self.raw_files = []
    super().__init__(**kwargs)

  @classmethod
  def urls(cls) -> list[str]:
    raise NotImplementedError

  @classmethod
  def source_identity(cls) -> dict:
    return {"builder": cls.name, "urls": cls.urls()}

  def _fingerprint_downloads(self, paths) -> None:
    self.raw_files = [file_fingerprint(os.fspath(p)) for p in paths]


class _IdxDownload(_Downloaded, _IdxBuilder):
  """28x28x1 images and labels from the four gzipped IDX files under URL_BASE."""

  URL_BASE = ""

  @classmethod
  def urls(cls) -> list[str]:
    return [cls.URL_BASE + stem + ".gz" for stems in FASHION_MNIST_FILES.values() for stem in stems]

  def _split_generators(self, dl_manager):
    paths = dl_manager.download({stem: self.URL_BASE + stem + ".gz"
                                 for stems in FASHION_MNIST_FILES.values() for stem in stems})
    self._fingerprint_downloads(paths.values())
    return {split: self._generate_examples(*(os.fspath(paths[stem]) for stem in stems))
            for split, stems in FASHION_MNIST_FILES.items()}


class MnistDownload(_IdxDownload):
  """MNIST (28x28x1, 60k/10k), downloaded."""
  URL_BASE = "https://storage.googleapis.com/cvdf-datasets/mnist/"


class FashionMnistDownload(_IdxDownload):
  """Fashion-MNIST (28x28x1, 60k/10k), downloaded."""
  URL_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}


def read_cifar10_binary(data: bytes) -> tuple[np.ndarray, np.ndarray]:
  """CIFAR-10's binary format: records of 1 label byte + 3072 pixel bytes (channel-major 3x32x32).

  -> (images uint8 [N, 32, 32, 3], labels int32 [N]).
  """
  if len(data) % 3073:
    raise ValueError(f"CIFAR-10 binary batch of {len(data)} bytes is not a whole number of 3073-byte records")
  records = np.frombuffer(data, np.uint8).reshape(-1, 3073)
  images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), records[:, 0].astype(np.int32)


class Cifar10Download(_Downloaded, tfds.core.GeneratorBasedBuilder):
  """CIFAR-10 (32x32x3, 50k/10k) from its authors' binary tarball, downloaded."""

  VERSION = tfds.core.Version("1.0.0")

  @classmethod
  def urls(cls) -> list[str]:
    return [CIFAR10_URL]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=_image_label_features((32, 32, 3)),
                                 homepage="https://www.cs.toronto.edu/~kriz/cifar.html")

  def _split_generators(self, dl_manager):
    archive = os.fspath(dl_manager.download(CIFAR10_URL))
    self._fingerprint_downloads([archive])
    return {split: self._generate_examples(archive, names) for split, names in CIFAR10_FILES.items()}

  def _generate_examples(self, archive, names):
    batches = {}
    with tarfile.open(archive, "r:gz") as tar:
      for member in tar.getmembers():
        if os.path.basename(member.name) in names:
          batches[os.path.basename(member.name)] = tar.extractfile(member).read()
    missing = [n for n in names if n not in batches]
    if missing:
      raise ValueError(f"{archive} lacks {', '.join(missing)}")
    index = 0
    for name in names:
      images, labels = read_cifar10_binary(batches[name])
      for image, label in zip(images, labels):
        yield index, {"image": image, "label": label}
        index += 1


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 digits: pixels 0..16 (17 levels), 1437 train / 360 test."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=_image_label_features((8, 8, 1)),
                                 description="scikit-learn digits, 17 grey levels.")

  def __init__(self, **kwargs):
    self.raw_files = []
    super().__init__(**kwargs)

  @staticmethod
  def _load():
    """-> (images uint8 [N, 8, 8, 1], labels int32 [N]) as scikit-learn ships them."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return digits.images.astype(np.uint8)[..., None], digits.target.astype(np.int32)

  @classmethod
  def source_identity(cls) -> dict:
    """A hash of the arrays scikit-learn returns, with the split's seed and size."""
    images, labels = cls._load()
    return {"builder": "digits", "arrays_sha256": array_fingerprint(images, labels), "split_seed": 0,
            "num_test": DIGITS_NUM_TEST}

  def _split_generators(self, dl_manager):
    images, labels = self._load()
    order = np.random.RandomState(0).permutation(len(labels))
    test, train = order[:DIGITS_NUM_TEST], order[DIGITS_NUM_TEST:]
    return {"train": self._generate_examples(images[train], labels[train]),
            "test": self._generate_examples(images[test], labels[test])}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": label}
