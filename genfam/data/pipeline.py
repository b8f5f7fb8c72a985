"""The grain pipeline: random-access source -> shuffled, sharded, batched dicts.

Training order is fixed by the seed and the iterator state, which the loop
checkpoints with the model (`loader_state` / `restore_loader_state`), so a
resumed run reads the same examples in the same order. There is one global
order of examples (`GlobalOrderSampler`); each JAX process reads its own rows
of every global batch, so the global batches are the same whatever the number
of processes and devices.
Evaluation reads the test split in its stored order, once, padding the last
batch and returning a mask of the real examples.

Captions: `captioned` wraps the sources so every batch also carries
`attributes` int32 [b, A] (measured once per split, `genfam.data.captions`)
and `caption` int32 [b, L]. A training example's caption is drawn from
(loader seed, its index in the split, its epoch): the epoch of the k-th
reading of an example is k - 1, whatever the process count (the epoch of
global position g is g // N) and across a resume (the sampler is a pure
function of the position the iterator state restores).
Evaluation captions use epoch 0 and seed EVAL_CAPTION_SEED.
"""
import json
from typing import Iterator

import grain
import jax
import numpy as np

from genfam.data import captions
from genfam.errors import GenfamError

BATCH_KEYS = ("image", "label")
CAPTION_KEYS = ("attributes", "caption")  # in batches of a `CaptionedSource`
EVAL_CAPTION_SEED = 0


def _projected(record) -> dict:
  """The batch keys of one record, as numpy arrays with fixed dtypes."""
  out = {"image": np.asarray(record["image"], np.uint8), "label": np.asarray(record["label"], np.int32)}
  if "attributes" in record:
    out["attributes"] = np.asarray(record["attributes"], np.int32)
  return out


class _Project(grain.transforms.Map):
  """Keeps the batch keys, as numpy arrays with fixed dtypes."""

  def map(self, record):
    return _projected(record)


class _ProjectAndCaption(grain.transforms.RandomMap):
  """The batch keys plus 'caption' int32 [L], phrased with the record's rng.

  The rng is `captions.caption_rng(seed, example, epoch)`, set by `GlobalOrderSampler`.
  """

  def __init__(self, spec):
    self.spec = spec

  def random_map(self, record, rng):
    out = _projected(record)
    text = captions.caption_text(self.spec.class_names[int(out["label"])], out["attributes"], rng)
    out["caption"] = captions.caption_tokens(text, self.spec)
    return out


class CaptionedSource:
  """A split whose records also carry `attributes` int32 [A]; `spec` phrases their captions.

  Its repr is its base source's, so grain accepts loader states saved before
  captions existed (the records and their order are the same).
  """

  def __init__(self, base, attributes: np.ndarray, spec, thresholds: dict):
    if len(attributes) != len(base):
      raise ValueError(f"{len(attributes)} attribute rows for {len(base)} records")
    self.base, self.attributes, self.spec, self.thresholds = base, attributes, spec, thresholds  # [N, A] int32

  def __len__(self):
    return len(self.base)

  def __getitem__(self, index):
    record = dict(self.base[index])
    record["attributes"] = self.attributes[index]
    return record

  def __repr__(self):
    return repr(self.base)


def split_images(source, chunk: int = 4096) -> np.ndarray:
  """All images of a split, uint8 [N, H, W, C] (from memory when the source holds them)."""
  if isinstance(source, CaptionedSource):
    source = source.base
  if isinstance(source, Subset) and isinstance(source.base, InMemorySource):
    return source.base.arrays["image"][source.start:source.stop]
  if isinstance(source, InMemorySource):
    return source.arrays["image"]
  read = source.__getitems__ if hasattr(source, "__getitems__") else (lambda ks: [source[k] for k in ks])
  chunks = [read(list(range(s, min(s + chunk, len(source))))) for s in range(0, len(source), chunk)]
  return np.concatenate([np.stack([np.asarray(r["image"], np.uint8) for r in records]) for records in chunks])


def captioned(spec, sources: dict, directory: str):
  """-> (spec, {split: CaptionedSource}): the splits with measured attributes and captions.

  Thresholds come from the train split and are stored in `directory` (the
  prepared dataset's), `captions.load_or_fit_thresholds`. Sources already
  captioned are returned as they are.
  """
  if all(isinstance(s, CaptionedSource) for s in sources.values()):
    return spec, sources
  thresholds = captions.load_or_fit_thresholds(directory, split_images(sources["train"]), spec.num_bins)
  return spec, {split: CaptionedSource(source, captions.measure_attributes(split_images(source), spec.num_bins,
                                                                            thresholds), spec, thresholds)
                for split, source in sources.items()}


class Subset:
  """Records [start, stop) of a source, re-indexed from 0 (same records, same repr scheme)."""

  def __init__(self, base, start: int, stop: int):
    self.base, self.start, self.stop = base, start, stop

  def __len__(self):
    return self.stop - self.start

  def __getitem__(self, index):
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} outside a subset of {len(self)} records")
    return self.base[self.start + int(index)]

  def __repr__(self):
    return f"Subset({self.base!r}, {self.start}, {self.stop})"


def hold_out(source, num: int):
  """-> (train, validation): the split less its last `num` records, and those records.

  The prepared train split is stored in TFDS's key-hash order, so its last
  records are a random subset. A CaptionedSource stays one (the attributes
  follow their records; the thresholds stay those fitted on the whole split).
  """
  n = len(source)
  if not 0 < num < n:
    raise GenfamError(f"data.validation_examples={num} must be between 1 and {n - 1}, the train split's size "
                      f"less one: lower it (or 0 for no validation split)")
  if isinstance(source, CaptionedSource):
    return (CaptionedSource(Subset(source.base, 0, n - num), source.attributes[:n - num], source.spec,
                            source.thresholds),
            CaptionedSource(Subset(source.base, n - num, n), source.attributes[n - num:], source.spec,
                            source.thresholds))
  return Subset(source, 0, n - num), Subset(source, n - num, n)


class GlobalOrderSampler:
  """One global order of training records, read in per-process shares of each batch.

  The global stream is grain's shuffled IndexSampler over all N records (one
  process's view: NoSharding), a new permutation each epoch, so global position
  g holds record `inner[g]` of epoch g // N. Global batch t is positions
  [t B, (t + 1) B); process p of P reads rows [p b, (p + 1) b) of it (b = B / P).
  So the examples of every global batch, and their order, do not depend on the
  number of processes or devices: a run on 2 processes x 4 devices sees the
  batches of 1 process x 8 devices. (grain's ShardByJaxProcess would instead give
  each process its own contiguous block of the records, shuffled within it.)

  grain's DataLoader asks for sampler index k P + p for the k-th record of process
  p (its shard options are this sampler's). Each record's rng is
  `captions.caption_rng(seed, record_key, epoch)`, so a caption depends only on
  the seed, the example and its epoch.
  """

  def __init__(self, num_records: int, global_batch: int, seed: int, process_index: int = 0,
               process_count: int = 1):
    if global_batch % process_count:
      raise ValueError(f"global batch {global_batch} does not divide by {process_count} processes")
    self._inner = grain.samplers.IndexSampler(num_records=num_records, shard_options=grain.sharding.NoSharding(),
                                              shuffle=True, num_epochs=None, seed=seed)
    self._shard_options = grain.sharding.ShardOptions(shard_index=process_index, shard_count=process_count)
    self._num_records, self._global_batch, self._seed = num_records, global_batch, seed
    self._local_batch = global_batch // process_count

  def global_position(self, index: int) -> int:
    """The global stream position of sampler index `index` (= k P + p)."""
    k, p = divmod(index, self._shard_options.shard_count)
    batch, row = divmod(k, self._local_batch)
    return batch * self._global_batch + p * self._local_batch + row

  def __len__(self):
    return len(self._inner)

  def __getitem__(self, index: int):
    position = self.global_position(index)
    key = int(self._inner[position].record_key)
    return grain.RecordMetadata(index=index, record_key=key,
                                rng=captions.caption_rng(self._seed, key, position // self._num_records))

  def __repr__(self):  # the same for every process and process count (checked by grain on restore)
    return (f"GlobalOrderSampler(num_records={self._num_records}, global_batch={self._global_batch}, "
            f"seed={self._seed})")


class InMemorySource:
  """A split read once from its array_record files into numpy arrays.

  Reading records one at a time through TFDS costs ~1 ms each; reading them
  in chunks with `__getitems__` and serving them from memory makes the
  pipeline negligible next to a training step. Used for splits of at most
  `max_bytes` (all of genfam's datasets); same indices, same records.
  """

  def __init__(self, source, chunk: int = 4096):
    columns = {k: [] for k in BATCH_KEYS}
    for start in range(0, len(source), chunk):
      records = source.__getitems__(list(range(start, min(start + chunk, len(source)))))
      for k in BATCH_KEYS:
        columns[k].append(np.stack([np.asarray(r[k]) for r in records]))
    self.arrays = {"image": np.concatenate(columns["image"]).astype(np.uint8),
                   "label": np.concatenate(columns["label"]).astype(np.int32)}
    self.name = repr(source)

  def __len__(self):
    return len(self.arrays["label"])

  def __getitem__(self, index):
    return {k: v[index] for k, v in self.arrays.items()}

  def __repr__(self):
    return f"InMemorySource({self.name})"


def in_memory(source, max_bytes: int = 2 << 30):
  """`source` served from memory if its images fit in `max_bytes`, else as it is."""
  first = np.asarray(source[0]["image"])
  if hasattr(source, "__getitems__") and first.nbytes * len(source) <= max_bytes:
    return InMemorySource(source)
  return source


def per_process_batch_size(global_batch_size: int, key: str = "data.batch_size", devices: int = 0) -> int:
  """The share of the global batch one process reads; checks divisibility by `devices`
  (default: all of them; the config key `key` is named in the error)."""
  devices = devices or jax.device_count()
  if global_batch_size % devices:
    raise GenfamError(f"batch size {global_batch_size} does not divide by the {devices} devices: set "
                      f"--config.{key} to a multiple of {devices}")
  return global_batch_size // jax.process_count()


def train_loader(source, global_batch_size: int, seed: int) -> grain.DataLoader:
  """An endless, seeded, shuffled loader of this process's rows of each global batch:
  {'image' [b,H,W,C] uint8, 'label' [b] int32} (+ 'attributes' [b, A], 'caption' [b, L]
  int32 from a CaptionedSource; `seed` also phrases them). See GlobalOrderSampler."""
  if global_batch_size <= 0:
    raise GenfamError(f"batch size {global_batch_size} is not positive: set --config.data.batch_size to a "
                      f"positive multiple of the {jax.device_count()} devices")
  if len(source) < global_batch_size:
    raise GenfamError(f"batch size {global_batch_size} is larger than the {len(source)} training examples: "
                      f"lower --config.data.batch_size")
  local = per_process_batch_size(global_batch_size)
  sampler = GlobalOrderSampler(len(source), global_batch_size, seed, jax.process_index(), jax.process_count())
  project = _ProjectAndCaption(source.spec) if isinstance(source, CaptionedSource) else _Project()
  # One reader thread: grain's default of 16 threads thrashes on a 2-core machine
  # (0.35 s per batch of 256 against 0.04 s); records come from memory anyway.
  return grain.DataLoader(
      data_source=source, sampler=sampler, worker_count=0,
      read_options=grain.ReadOptions(num_threads=1, prefetch_buffer_size=2 * local),
      operations=[project, grain.transforms.Batch(local, drop_remainder=True)])


def loader_state(iterator) -> dict:
  """The iterator's position as a JSON-able dict (checkpointed with the model), the
  same on every process: grain's state with its sampler index written as the
  number of global records consumed ('global_records'), from which any process
  of any process count finds its own index again (`restore_loader_state`)."""
  state = iterator.get_state()
  state = json.loads(state.decode() if isinstance(state, bytes) else json.dumps(state))
  count = jax.process_count()
  consumed = {w: (int(i) // count + 1) * count if int(i) >= 0 else 0 for w, i in state["last_seen_indices"].items()}
  state["last_seen_indices"] = {w: -1 for w in state["last_seen_indices"]}
  return {"grain": json.dumps(state), "global_records": consumed}


def restore_loader_state(iterator, state: dict) -> None:
  grain_state = json.loads(state["grain"])
  if "global_records" in state:  # -> this process's last sampler index (k P + p of its last record)
    count, index = jax.process_count(), jax.process_index()
    grain_state["last_seen_indices"] = {
        w: (n // count - 1) * count + index if n > 0 else -1 for w, n in state["global_records"].items()}
  iterator.set_state(json.dumps(grain_state, indent=4).encode())


def eval_batches(source, batch_size: int, num_examples: int = 0,
                 caption_seed: int = EVAL_CAPTION_SEED) -> Iterator[tuple[dict, np.ndarray]]:
  """Test examples in stored order, once: yields (batch, mask [b] bool).

  A CaptionedSource's batches carry 'attributes' and 'caption' (epoch 0, `caption_seed`).
  The first `num_examples` (all if 0) form global batches of `batch_size` in stored
  order, the same whatever the process count: global batch k holds examples
  k B .. k B + B - 1 and process p reads its rows p b .. p b + b - 1 (b = B / P, the
  convention of the training batches, GlobalOrderSampler). So a stochastic estimator
  that draws its noise per row of the global batch (AIS, dequantization, sampled t)
  gives every example the same noise on 1 process as on P. The last global batch is
  padded with its first example, mask False; every batch has exactly b rows and every
  process yields the same number of batches (one jit, matching collectives).
  """
  total = len(source) if num_examples <= 0 else min(num_examples, len(source))
  # rows per process; a batch that runs whole on one device (evaluate.batch_results) need not divide by devices
  local = per_process_batch_size(batch_size, "eval.batch_size", devices=jax.process_count())
  spec = source.spec if isinstance(source, CaptionedSource) else None

  def record(i):
    out = _projected(source[i])
    if spec is not None:
      out["caption"] = captions.example_caption(spec, caption_seed, i, 0, out["label"], out["attributes"])
    return out

  first_row = jax.process_index() * local
  for start in range(0, total, batch_size):
    rows = np.arange(start, min(start + batch_size, total))       # this global batch's examples
    idx = rows[first_row:first_row + local]                        # this process's share of them
    records = [record(int(i)) for i in idx]
    mask = np.zeros(local, bool)
    mask[:len(idx)] = True
    records += [record(int(rows[0]))] * (local - len(records))
    yield {k: np.stack([r[k] for r in records]) for k in records[0]}, mask
