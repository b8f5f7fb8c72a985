"""When to log, evaluate, checkpoint or sample, and the training clock that time budgets read."""
import contextlib
import time


def is_due(step: int, every: int, last_step: int, first: bool = False) -> bool:
  """True after `step` completed steps if an action with period `every` is due.

  Due at every multiple of `every`, always at the last step, and at step 1
  when `first` (so a run shows its starting loss). every <= 0: only the last.
  """
  if step == last_step:
    return True
  if first and step == 1:
    return True
  return every > 0 and step % every == 0


CLOCKS = ("wall", "cpu")


def clock_source(name: str):
  """train.clock or eval.clock -> the function a TrainingClock (or the sampling timer) reads:
  'wall' is time.time (seconds of wall clock), 'cpu' is time.process_time (CPU seconds of this
  process, every thread summed).
  Pinned to one core, 'cpu' counts the core-seconds the run actually got, so a budget is
  not shrunk by other work on a busy machine (the budget ladder, docs/comparison.md)."""
  if name not in CLOCKS:
    raise ValueError(f"unknown train.clock or eval.clock {name!r}; use one of {CLOCKS}")
  return time.time if name == "wall" else time.process_time


class TrainingClock:
  """A run's training time: seconds in the loop summed over every session (wall clock, or
  with `now=time.process_time` the process's CPU time), less the time spent in the periodic
  evaluations and sample grids inside the loop.

  train.max_train_seconds, eval.every_seconds, the checkpointed train_seconds and
  the logged images/s all read this clock, so a family whose evaluation is costly
  (DDPM's 1000-pass bound, AIS) gets the same training budget as one whose
  evaluation is cheap. Checkpoint saves stay in: they are part of training.
  """

  def __init__(self, seconds_before: float = 0.0, now=None):
    self._now = now or time.time
    self._start, self._before, self._excluded = self._now(), float(seconds_before), 0.0

  def seconds(self) -> float:
    return self._before + self._now() - self._start - self._excluded

  @contextlib.contextmanager
  def excluded(self):
    """Time spent inside this block is not training time."""
    start = self._now()
    try:
      yield
    finally:
      self._excluded += self._now() - start
