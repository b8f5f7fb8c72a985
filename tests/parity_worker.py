"""Run by test_multidevice: trains smoke configs on however many (fake) devices
this process has, and saves each one's final params and per-step losses to an npz.

  parity_worker.py NAME[,NAME...] WORKDIR_ROOT OUT_DIR STEPS
writes OUT_DIR/NAME.npz for each config, trained in WORKDIR_ROOT/NAME (one process
for every config: JAX starts once)."""
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from tests.conftest import load_config  # noqa: E402
from genfam.loop import train  # noqa: E402


def main(names, workdir_root, out_dir, steps):
  for name in names.split(","):
    config = load_config(name)
    config.train.num_steps = int(steps)
    config.train.eval_every = 0
    config.train.final_eval = False   # params and losses are compared, not test numbers
    workdir = os.path.join(workdir_root, name)
    train.train_and_evaluate(config, workdir)
    run = train.Run(config, workdir)
    state, _, _ = run.restore()
    leaves = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state.params)}
    with open(f"{workdir}/metrics.jsonl") as f:
      losses = [r["loss"] for r in map(json.loads, f) if r["split"] == "train"]
    np.savez(os.path.join(out_dir, f"{name}.npz"), losses=np.array(losses), devices=jax.device_count(), **leaves)


if __name__ == "__main__":
  main(*sys.argv[1:])
