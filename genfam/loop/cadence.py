"""The one helper that decides when to log, evaluate, checkpoint or sample."""


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
