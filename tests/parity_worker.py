"""Run by test_multidevice: trains a smoke config on however many (fake) devices
this process has, and saves final params and per-step losses to an npz."""
import json
import sys

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from tests.conftest import load_config  # noqa: E402
from genfam.loop import train  # noqa: E402
from genfam.loop.checkpointing import Checkpointer  # noqa: E402


def main(name, workdir, out, steps):
  config = load_config(name)
  config.train.num_steps = int(steps)
  config.train.eval_every = 0
  config.eval.num_examples = 32
  train.train_and_evaluate(config, workdir)
  run = train.Run(config, workdir)
  state, _, _ = run.restore()
  leaves = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state.params)}
  with open(f"{workdir}/metrics.jsonl") as f:
    losses = [r["loss"] for r in map(json.loads, f) if r["split"] == "train"]
  np.savez(out, losses=np.array(losses), devices=jax.device_count(), **leaves)


if __name__ == "__main__":
  main(*sys.argv[1:])
