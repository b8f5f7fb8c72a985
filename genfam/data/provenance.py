"""Where a prepared dataset came from: source manifests, fingerprints, provenance.

A prepared dataset (TFDS array_record files) is tied to the raw files it was
prepared from. Each builder gets a source *manifest* before it prepares
anything — for local files their names, sizes and SHA-256 of their bytes (the
compressed file, as stored); for a download the URLs; for scikit-learn's
digits a hash of the arrays it returns — and the manifest's own hash names the
TFDS builder config, so the data live under

    DATA_DIR/<builder>/<fingerprint>/<version>/

A different source, or a raw file changed in place, gives another fingerprint
and so is prepared again into its own place; an unchanged source reuses the
cache. The manifest is written beside the prepared files (`genfam_source.json`,
with the downloaded files' hashes added for a download) and anything derived
from the data later (caption thresholds) is stored in the same directory.
"""
import dataclasses
import hashlib
import json
import os

MANIFEST_FILE = "genfam_source.json"


def file_fingerprint(path: str, chunk: int = 1 << 20) -> dict:
  """{'name', 'bytes', 'sha256'} of the file at `path` (its bytes as stored, gzipped or not)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      digest.update(block)
  return {"name": os.path.basename(path), "bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def array_fingerprint(*arrays) -> str:
  """SHA-256 of the arrays' dtypes, shapes and bytes."""
  digest = hashlib.sha256()
  for a in arrays:
    digest.update(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.tobytes())
  return digest.hexdigest()


def fingerprint(identity: dict) -> str:
  """A short stable name for a source identity: 'src-' + 16 hex digits of its SHA-256.

  `identity` is what makes the data what they are (file contents, URLs), never
  where they happen to be (a copy of the same files elsewhere reuses the cache).
  """
  text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
  return "src-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def write_manifest(directory: str, manifest: dict) -> None:
  """Writes `directory`/genfam_source.json atomically (tmp file + rename)."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, MANIFEST_FILE)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def read_manifest(directory: str) -> dict | None:
  path = os.path.join(directory, MANIFEST_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


@dataclasses.dataclass(frozen=True)
class Provenance:
  """What a run's numbers were computed on, for results.json and the printed header.

  dataset:      config.data.name.
  source:       where the raw data were read from now (a directory, URLs, or a library).
  fingerprint:  'src-…' hash of the source identity (the prepared data's directory name).
  files:        the raw files' {'name', 'bytes', 'sha256'} (downloads: as first prepared).
  prepared_dir: the directory of the prepared array_record files.
  num_train, num_test: the split sizes actually read (train less any validation split).
  num_validation: examples held out of the prepared train split (data.validation_examples).
  """
  dataset: str
  source: str
  fingerprint: str
  files: tuple
  prepared_dir: str
  num_train: int
  num_test: int
  num_validation: int = 0

  def as_dict(self) -> dict:
    return {"dataset": self.dataset, "source": self.source, "fingerprint": self.fingerprint,
            "files": [dict(f) for f in self.files], "prepared_dir": self.prepared_dir,
            "num_train": self.num_train, "num_test": self.num_test, "num_validation": self.num_validation}

  def describe(self) -> str:
    """'data: fashion_mnist from DIR (src-…): 60000 train / 10000 test examples, prepared in DIR'."""
    validation = f" / {self.num_validation} validation (held out of train)" if self.num_validation else ""
    return (f"data: {self.dataset} from {self.source} ({self.fingerprint}): {self.num_train} train / "
            f"{self.num_test} test{validation} examples, prepared in {self.prepared_dir}")
