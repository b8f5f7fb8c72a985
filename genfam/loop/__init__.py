"""The training loop's pieces: everything that touches devices, files and time.

`train` is the one loop (a `Run`, then `train_and_evaluate`, `evaluate_workdir`,
`sample_workdir`); around it `sharding` (the one-axis `data` mesh), `cadence`
(when to log, evaluate, checkpoint, sample), `checkpointing` (orbax steps of
state, data position and meta), `workdir` (the run lock, config drift on resume,
preemption) and `logbook` (metrics.jsonl, TensorBoard, progress bar). `optim`
holds the optimizers, EMA and scalar-loss update step that the families build
and hand to the loop; it is pure, so a family importing it still touches no
device, checkpoint or file.
"""
