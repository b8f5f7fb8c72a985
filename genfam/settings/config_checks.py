"""Bad config values become one line naming the key and the fix, before anything runs.

`check(config)` covers the sections every config shares (`genfam.settings.config_base`):
sizes and counts that must be positive or non-negative, rates and decays in
their ranges, and the local source directory, which must exist. A family checks its own model
keys where it is built (`make`), with the same kind of message.
"""
import math
import os

from genfam.errors import GenfamError
from genfam.cpu import host_memory

# key -> (test, what the value must be)
_POSITIVE_INT = "a positive integer"
_NON_NEGATIVE_INT = "an integer >= 0"
_RULES = {
    "seed": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT),
    "data.batch_size": (lambda v: isinstance(v, int) and v > 0, _POSITIVE_INT),
    "data.validation_examples": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: none)"),
    "train.num_steps": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT),
    "train.log_every": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: only the first and last step)"),
    "train.eval_every": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: only at the end)"),
    "train.eval_examples": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: the whole split)"),
    "train.checkpoint_every": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: only at the end)"),
    "train.keep_checkpoints": (lambda v: isinstance(v, int) and v > 0, _POSITIVE_INT),
    "train.sample_every": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: only at the end)"),
    "train.max_consecutive_nonfinite": (lambda v: isinstance(v, int) and v > 0, _POSITIVE_INT),
    "train.malloc_retain_mib": (lambda v: isinstance(v, int) and v >= 0,
                                _NON_NEGATIVE_INT + " of MiB (0: glibc's own malloc thresholds)"),
    "train.malloc": (lambda v: v in host_memory.MALLOC_CHOICES,
                     "one of " + ", ".join(repr(m) for m in host_memory.MALLOC_CHOICES)),
    "train.max_train_seconds": (lambda v: _number(v) and v >= 0, "a number of seconds >= 0 (0: no limit)"),
    "train.clock": (lambda v: v in ("wall", "cpu"), "'wall' or 'cpu'"),
    "eval.clock": (lambda v: v in ("wall", "cpu"), "'wall' or 'cpu'"),
    "optim.learning_rate": (lambda v: _number(v) and v > 0, "a positive number"),
    "optim.warmup_steps": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT),
    "optim.decay_steps": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: no decay)"),
    "optim.clip_norm": (lambda v: _number(v) and v >= 0, "a number >= 0 (0: no clipping)"),
    "optim.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "optim.b1": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optim.b2": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optim.ema_decay": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1) (0: no EMA)"),
    "eval.batch_size": (lambda v: isinstance(v, int) and v > 0, _POSITIVE_INT),
    "eval.num_examples": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: the whole split)"),
    "eval.num_draws": (lambda v: isinstance(v, int) and v > 0, _POSITIVE_INT),
    "eval.extra_num_examples": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: as num_examples)"),
    "eval.reference_images": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: min(N, test split))"),
    "eval.condition_images": (lambda v: isinstance(v, int) and v >= 0, _NON_NEGATIVE_INT + " (0: the reference's)"),
    "eval.kid_stats_images": (lambda v: isinstance(v, int) and v >= 2, "an integer >= 2"),
    "sample.num": (lambda v: isinstance(v, int) and v > 0, _POSITIVE_INT),
}


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if part not in node:
      return _MISSING
    node = node[part]
  return node


_MISSING = object()


def check(config) -> None:
  """Raises GenfamError (one line: the key, the bad value, what it must be) on the first bad value."""
  for key, (ok, must_be) in _RULES.items():
    value = _get(config, key)
    if value is _MISSING or isinstance(value, bool) or ok(value):
      continue
    raise GenfamError(f"--config.{key}={value!r} is not valid: it must be {must_be}")
  source_dir = _get(config, "data.source_dir")
  if source_dir not in (_MISSING, "") and not os.path.isdir(source_dir):
    raise GenfamError(f"--config.data.source_dir={source_dir!r} is not a directory: point it at the directory "
                      f"holding the dataset's raw files, or leave it empty for the default")
