"""Run by test_faults and test_train: trains the independent smoke config through genfam.main's
command line and meets a fault at a chosen, deterministic point: SIGKILL, as a crash or an OOM
kill would, a full disk, or SIGTERM from outside.

  fault_worker.py POINT N WORKDIR [--config.key=value ...]
POINT: 'step' (killed at the N-th training batch), 'checkpoint' (killed inside the N-th
checkpoint save, while orbax commits it: every file written to its temporary directory, which
is not yet renamed to the step's), 'eval' (killed inside the final evaluation, once its first
batch is done), 'enospc' (the N-th checkpoint save finds the disk full), 'sigterm' (at the N-th
training batch, writes WORKDIR.waiting and waits until SIGTERM has reached the run's handler, then
goes on: the run saves that step and exits).
"""
import errno
import os
import signal
import sys
import threading

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from orbax.checkpoint._src.path import atomicity  # noqa: E402

from genfam.evaluation import evaluate  # noqa: E402
from genfam.loop import train  # noqa: E402
from genfam.loop import workdir as workdir_guard  # noqa: E402
from genfam.loop.checkpointing import Checkpointer  # noqa: E402


def die():
  os.kill(os.getpid(), signal.SIGKILL)


def at_batch(n, then):
  """Calls then() when the training loop shards its n-th batch (the batch of step n); the batches of
  Run.__init__'s example and of evaluations are not counted."""
  shard, calls = train.sharding.shard_batch, []

  def counted(*a, **k):
    caller = sys._getframe(1)
    if caller.f_globals.get("__name__") == train.__name__ and caller.f_code.co_name != "__init__":
      calls.append(1)
      if len(calls) == n:
        then()
    return shard(*a, **k)
  train.sharding.shard_batch = counted


def main(point, n, workdir, *overrides):
  n, calls = int(n), []
  if point == "step":
    at_batch(n, die)
  elif point == "checkpoint":
    save, commit = Checkpointer.save, atomicity.AtomicRenameTemporaryPath.finalize

    def counted_save(self, *a, **k):
      calls.append(1)
      return save(self, *a, **k)

    async def killed_while_committing(self, *a, **k):
      if len(calls) == n:
        die()
      return await commit(self, *a, **k)
    Checkpointer.save = counted_save
    atomicity.AtomicRenameTemporaryPath.finalize = killed_while_committing
  elif point == "enospc":
    save = Checkpointer.save

    def full_disk(self, *a, **k):
      calls.append(1)
      if len(calls) == n:
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(self.directory, "tmp"))
      return save(self, *a, **k)
    Checkpointer.save = full_disk
  elif point == "eval":
    run_evaluate, batches, final = train.Run.evaluate, evaluate.batch_results, []

    def evaluating(self, *a, **k):
      final.append(k["extras"])   # the final evaluation reports every bound; a periodic one does not
      return run_evaluate(self, *a, **k)

    def killed_in_eval(*a, **k):
      for result in batches(*a, **k):
        yield result
        if final[-1]:
          die()   # the final evaluation's first batch is done: killed before the second
    train.Run.evaluate = evaluating
    evaluate.batch_results = killed_in_eval
  elif point == "sigterm":
    handle, received = workdir_guard.Preemption._handle, threading.Event()

    def noted(self, *a):
      handle(self, *a)
      received.set()

    def wait_for_sigterm():
      with open(f"{workdir}.waiting", "w") as f:
        f.write(str(os.getpid()))
      while not received.wait(0.05):
        pass
    workdir_guard.Preemption._handle = noted
    at_batch(n, wait_for_sigterm)
  else:
    raise SystemExit(f"unknown fault point {point!r}")
  sys.argv = ["genfam.main", "--config=configs/independent.py:smoke", f"--workdir={workdir}", *overrides]
  from genfam import main as cli
  cli.run()


if __name__ == "__main__":
  main(*sys.argv[1:])
