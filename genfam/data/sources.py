"""Dataset names -> a `DatasetSpec` and random-access sources per split.

'fashion_mnist' reads local IDX files (config.data.source_dir, else
$GENFAM_FASHION_MNIST_DIR, else Debian's /usr/share/datasets/fashion-mnist)
through our own TFDS builder; without them it falls back to a download when
allowed. 'digits' is scikit-learn's and always available. 'mnist' and
'cifar10' are downloaded once (TFDS's download manager, our own builders:
TFDS's stock builders need TensorFlow to encode their images).
A dataset that is not on the machine raises one GenfamError saying how to get it.

Prepared data are tied to their source: the builder config is named after a
fingerprint of the raw files (or URLs), so another source directory, or a file
changed in place, is prepared again into its own directory, and `load` returns
the provenance a run writes into its results (`genfam.data.provenance`).
"""
import contextlib
import dataclasses
import fcntl
import os
from typing import NamedTuple

from absl import logging as absl_logging

from genfam.data import builders, provenance
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


def _prepared(builder_class, data_dir: str, identity: dict, source: str, **kwargs):
  """Builds `builder_class` under the builder config named by `identity`'s fingerprint,
  prepares it once (under the lock) and records its manifest beside the data.

  -> (builder, manifest); the manifest holds the identity, the source it was first
  prepared from, and the raw files' fingerprints.
  """
  key = provenance.fingerprint(identity)
  # The builder is made under the lock too: it reads the prepared dataset's info when
  # made, and one made while another process prepares would see empty splits.
  with _prepare_lock(data_dir):
    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS warns of every custom builder config
    try:
      builder = builder_class(data_dir=data_dir, config=_tfds.core.BuilderConfig(name=key),
                              file_format="array_record", **kwargs)
    finally:
      absl_logging.set_verbosity(previous)
    builder.download_and_prepare()
    manifest = provenance.read_manifest(builder.data_dir)
    if manifest is None or manifest.get("fingerprint") != key:
      files = identity.get("files") or getattr(builder, "raw_files", [])
      manifest = {"fingerprint": key, "identity": identity, "prepared_from": source, "files": files}
      provenance.write_manifest(builder.data_dir, manifest)
  return builder, manifest


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
  loaded = load(data_config)
  return loaded.spec, loaded.sources


class Loaded(NamedTuple):
  """A dataset ready to read: its spec (split sizes as read), sources per split, provenance."""
  spec: DatasetSpec
  sources: dict
  provenance: provenance.Provenance


def load(data_config) -> Loaded:
  """The dataset `data_config` names, prepared from its own source (see `genfam.data.provenance`)."""
  spec = dataset_spec(data_config.name)
  data_dir = data_config.data_dir or default_data_dir()
  local_dir = fashion_mnist_source_dir(data_config.source_dir) if spec.name == "fashion_mnist" else None
  if spec.name == "digits":
    source = "scikit-learn's load_digits"
    builder, manifest = _prepared(builders.Digits, data_dir, builders.Digits.source_identity(), source)
  elif local_dir:
    source = os.path.realpath(local_dir)
    builder, manifest = _prepared(builders.FashionMnistLocal, data_dir,
                                  builders.FashionMnistLocal.source_identity(local_dir), source,
                                  source_dir=local_dir)
  else:
    if spec.name == "fashion_mnist" and (data_config.source_dir or not data_config.allow_download):
      raise _missing_fashion_mnist(data_config.source_dir)
    if not data_config.allow_download:
      raise GenfamError(f"dataset {spec.name!r} needs a download and config.data.allow_download is "
                        f"False: set --config.data.allow_download=True on a machine with network")
    builder_class = _DOWNLOADED[spec.name]
    source = " ".join(builder_class.urls())
    try:
      builder, manifest = _prepared(builder_class, data_dir, builder_class.source_identity(), source)
    except Exception as e:  # network or TFDS failure: one line, with the ways out
      first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      if spec.name == "fashion_mnist":
        raise _missing_fashion_mnist("", f"; the download failed: {first_line}") from None
      raise GenfamError(f"dataset {spec.name!r} could not be downloaded ({first_line}): it needs network "
                        f"once; or use 'fashion_mnist' (Debian's dataset-fashion-mnist) or 'digits'") from None
  from genfam.data.pipeline import captioned, hold_out, in_memory
  splits = {split: in_memory(builder.as_data_source(split=split)) for split in ("train", "test")}
  # Captions and attributes, with thresholds fitted on this prepared train split and stored beside it.
  spec, splits = captioned(spec, splits, os.fspath(builder.data_dir))
  held_out = data_config.get("validation_examples", 0)
  if held_out:  # never trained on: for choices that must not see test (e.g. the GAN's AIS sigma^2)
    splits["train"], splits["validation"] = hold_out(splits["train"], held_out)
  spec = dataclasses.replace(spec, num_train=len(splits["train"]), num_test=len(splits["test"]))
  origin = provenance.Provenance(
      dataset=spec.name, source=source, fingerprint=manifest["fingerprint"], files=tuple(manifest["files"]),
      prepared_dir=os.fspath(builder.data_dir), num_train=spec.num_train, num_test=spec.num_test,
      num_validation=len(splits["validation"]) if "validation" in splits else 0)
  return Loaded(spec, splits, origin)
