"""Dataset names -> a `DatasetSpec` and random-access sources per split.

'fashion_mnist' reads local IDX files (config.data.source_dir, else
$GENFAM_FASHION_MNIST_DIR, else Debian's /usr/share/datasets/fashion-mnist)
through our own TFDS builder; without them it falls back to a download when
allowed. 'digits' is scikit-learn's and always available. 'mnist' and
'cifar10' are downloaded once (TFDS's download manager, our own builders:
TFDS's stock builders need TensorFlow to encode their images).
A dataset that is not on the machine raises one GenfamError saying how to get it.
"""
import contextlib
import fcntl
import os

from genfam.data import builders
from genfam.data.spec import DatasetSpec
from genfam.errors import GenfamError

import tensorflow_datasets as _tfds

_tfds.disable_progress_bar()

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "GENFAM_FASHION_MNIST_DIR"
DATA_DIR_ENV = "GENFAM_DATA_DIR"

# Datasets prepared from their authors' raw files by TFDS's download manager.
_DOWNLOADED = {"fashion_mnist": builders.FashionMnistDownload, "mnist": builders.MnistDownload,
               "cifar10": builders.Cifar10Download}

_SPECS = {
    "fashion_mnist": DatasetSpec("fashion_mnist", (28, 28, 1), 256, builders.FASHION_MNIST_CLASSES, 60000, 10000),
    "digits": DatasetSpec("digits", (8, 8, 1), 17, builders.DIGITS_CLASSES,
                          1797 - builders.DIGITS_NUM_TEST, builders.DIGITS_NUM_TEST),
    "mnist": DatasetSpec("mnist", (28, 28, 1), 256, builders.DIGITS_CLASSES, 60000, 10000),
    "cifar10": DatasetSpec("cifar10", (32, 32, 3), 256,
                           ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                            "ship", "truck"), 50000, 10000),
}


def known_datasets() -> tuple[str, ...]:
  return tuple(sorted(_SPECS))


def dataset_spec(name: str) -> DatasetSpec:
  if name not in _SPECS:
    raise GenfamError(f"unknown dataset {name!r} in config.data.name; known: {', '.join(known_datasets())}")
  return _SPECS[name]


def default_data_dir() -> str:
  return os.environ.get(DATA_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "genfam", "tfds")


def fashion_mnist_source_dir(source_dir: str = "") -> str | None:
  """The first directory holding all four Fashion-MNIST IDX files, or None."""
  candidates = [source_dir] if source_dir else [os.environ.get(FASHION_MNIST_ENV, ""), DEBIAN_FASHION_MNIST_DIR]
  for directory in candidates:
    if directory and all(builders.find_idx_file(directory, stem)
                         for files in builders.FASHION_MNIST_FILES.values() for stem in files):
      return directory
  return None


@contextlib.contextmanager
def _prepare_lock(data_dir: str):
  """Serialises preparation across processes sharing one data_dir."""
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, ".genfam-prepare.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _prepared(builder):
  with _prepare_lock(builder.data_dir_root):
    builder.download_and_prepare()
  return builder


def _missing_fashion_mnist(source_dir: str, why: str = "") -> GenfamError:
  where = f"--config.data.source_dir={source_dir} does not hold" if source_dir else "no directory holds"
  return GenfamError(
      f"Fashion-MNIST is not on this machine ({where} the four IDX files{why}): run "
      f"`apt-get install -y dataset-fashion-mnist`, or pass --config.data.source_dir=DIR "
      f"(or set {FASHION_MNIST_ENV}) with the IDX files, or use a machine with network to download it")


def data_sources(data_config):
  """-> (DatasetSpec, {'train': source, 'test': source}); sources are random access.

  data_config: the config's `data` section (name, source_dir, data_dir, allow_download).
  """
  spec = dataset_spec(data_config.name)
  data_dir = data_config.data_dir or default_data_dir()
  if spec.name == "digits":
    builder = _prepared(builders.Digits(data_dir=data_dir, file_format="array_record"))
  elif spec.name == "fashion_mnist" and fashion_mnist_source_dir(data_config.source_dir):
    builder = _prepared(builders.FashionMnistLocal(
        source_dir=fashion_mnist_source_dir(data_config.source_dir), data_dir=data_dir,
        file_format="array_record"))
  else:
    if spec.name == "fashion_mnist" and (data_config.source_dir or not data_config.allow_download):
      raise _missing_fashion_mnist(data_config.source_dir)
    if not data_config.allow_download:
      raise GenfamError(f"dataset {spec.name!r} needs a download and config.data.allow_download is "
                        f"False: set --config.data.allow_download=True on a machine with network")
    try:
      builder = _prepared(_DOWNLOADED[spec.name](data_dir=data_dir, file_format="array_record"))
    except Exception as e:  # network or TFDS failure: one line, with the ways out
      first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      if spec.name == "fashion_mnist":
        raise _missing_fashion_mnist("", f"; the download failed: {first_line}") from None
      raise GenfamError(f"dataset {spec.name!r} could not be downloaded ({first_line}): it needs network "
                        f"once; or use 'fashion_mnist' (Debian's dataset-fashion-mnist) or 'digits'") from None
  from genfam.data.pipeline import in_memory
  return spec, {split: in_memory(builder.as_data_source(split=split)) for split in ("train", "test")}
