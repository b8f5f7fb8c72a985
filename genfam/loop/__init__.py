"""The training loop's pieces: everything that touches devices, files and time.

`train` is the one loop (a `Run`, then `train_and_evaluate`, `evaluate_workdir`,
`sample_workdir`); around it `cadence` (when to log, evaluate, checkpoint,
sample), `checkpointing` (orbax steps of state, data position and meta),
`workdir` (the run lock, config drift on resume, preemption), `logbook`
(metrics.jsonl, TensorBoard, progress bar) and `frozen` (other runs' trained
models, restored for a family or the evaluation: the loop's only way to another
run's checkpoint). The loop builds on everything below it (`genfam.sharding`,
`genfam.evaluation`, `genfam.registry`, ...); nothing below imports it.
"""
