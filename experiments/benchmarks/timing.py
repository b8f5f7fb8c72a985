"""The one timing rule of the sampling benchmarks: call once to compile, then keep the best of `repeats`."""
import time

import jax


def best_of(draw, repeats: int):
  """draw(i) for i = 0 (compiles, then runs once) and i = 1..repeats, each waited for;
  -> (the last result, best seconds of the repeats, compile seconds = first - best, >= 0)."""
  start = time.perf_counter()
  result = jax.block_until_ready(draw(0))
  first = time.perf_counter() - start
  best = float("inf")
  for i in range(1, repeats + 1):
    start = time.perf_counter()
    result = jax.block_until_ready(draw(i))
    best = min(best, time.perf_counter() - start)
  return result, best, max(first - best, 0.0)
