"""Run by test_faults: trains the independent smoke config through genfam.main's
command line and meets a fault at a chosen point: SIGKILL, as a crash or an OOM
kill would, or a full disk.

  fault_worker.py POINT N WORKDIR [--config.key=value ...]
POINT: 'step' (killed at the N-th training batch), 'checkpoint' (killed a few ms
into the N-th checkpoint save, while orbax writes), 'eval' (killed inside the
final evaluation), 'enospc' (the N-th checkpoint save finds the disk full).
"""
import errno
import os
import signal
import sys
import threading
import time

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from genfam.evaluation import evaluate  # noqa: E402
from genfam import sharding  # noqa: E402
from genfam.loop import train  # noqa: E402
from genfam.loop.checkpointing import Checkpointer  # noqa: E402


def die():
  os.kill(os.getpid(), signal.SIGKILL)


def main(point, n, workdir, *overrides):
  n, calls = int(n), []
  if point == "step":
    shard = sharding.shard_batch

    def counted(*a, **k):
      calls.append(1)
      if len(calls) == n + 1:  # the first call shards the example batch of Run.__init__
        die()
      return shard(*a, **k)
    train.sharding.shard_batch = counted
  elif point == "checkpoint":
    save = Checkpointer.save

    def killed_while_saving(self, *a, **k):
      calls.append(1)
      if len(calls) == n:
        threading.Thread(target=lambda: (time.sleep(0.003), die()), daemon=True).start()
      return save(self, *a, **k)
    Checkpointer.save = killed_while_saving
  elif point == "enospc":
    save = Checkpointer.save

    def full_disk(self, *a, **k):
      calls.append(1)
      if len(calls) == n:
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(self.directory, "tmp"))
      return save(self, *a, **k)
    Checkpointer.save = full_disk
  elif point == "eval":
    report = evaluate.likelihood_report

    def killed_in_eval(*a, **k):
      threading.Thread(target=lambda: (time.sleep(0.05), die()), daemon=True).start()
      return report(*a, **k)
    evaluate.likelihood_report = killed_in_eval
  else:
    raise SystemExit(f"unknown kill point {point!r}")
  sys.argv = ["genfam.main", "--config=configs/independent.py:smoke", f"--workdir={workdir}", *overrides]
  from genfam import main as cli
  cli.run()


if __name__ == "__main__":
  main(*sys.argv[1:])
