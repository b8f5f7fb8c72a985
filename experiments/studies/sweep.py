"""Run one config with several sets of overrides and tabulate what each reached.

Local (one machine, variants one after another):

  python -m experiments.studies.sweep --config=configs/glow.py --root=runs/sweep_glow \\
      --common=train.num_steps=1500,eval.num_examples=2000 \\
      --variant=k4w64:model.num_steps=4,model.width=64 \\
      --variant=k8w64:model.num_steps=8,model.width=64

Distributed, on an Optuna study in a shared database (SQLite on one machine,
PostgreSQL across machines): enqueue the variants once, start any number of
workers anywhere that see the database and ROOT, then read the table:

  python -m experiments.studies.sweep --mode=enqueue --storage=sqlite:///sweep.db --study=glow \\
      --config=configs/glow.py --root=runs/sweep_glow --common=... --variant=... --variant=...
  python -m experiments.studies.sweep --mode=worker --storage=sqlite:///sweep.db --study=glow   # on each machine
  python -m experiments.studies.sweep --mode=report --storage=sqlite:///sweep.db --study=glow

Each variant is an ordinary run of `python -m genfam.main` in ROOT/NAME (so an
interrupted run resumes where it stopped, and a finished one is only
re-evaluated), started as a subprocess so that JAX, its devices and
jax.distributed stay per trial; it dies with its worker (PR_SET_PDEATHSIG).
Workers only pull enqueued trials: `enqueue` adds each variant once
(`skip_if_exists`), a worker claims a waiting trial atomically through the
storage, and a trial that did not come from the queue is pruned unrun, so two
workers never run the same variant and a finished grid is not rerun. Workers
record heartbeats; a trial whose worker was killed goes stale after
`--grace-period` seconds and is failed and re-enqueued (Optuna's
RetryHeartbeatStaleTrialCallback, `--max-retry` times) by the next worker that
starts a trial, and its run resumes from its last checkpoint.

The table lists the test bits/dim, the steps, the training wall-clock time,
images/s and the bits/dim gained over the uniform model per CPU-hour, with
the command that reproduces each row.
"""
import argparse
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import warnings


def command(config: str, workdir: str, overrides: list[str]) -> list[str]:
  return [sys.executable, "-m", "genfam.main", f"--config={config}", f"--workdir={workdir}",
          *[f"--config.{o}" for o in overrides]]


def parse_variants(variants: list[str], common: str) -> dict[str, list[str]]:
  """['NAME:k=v,k=v', ...] -> {NAME: common overrides + the variant's}."""
  shared = [o for o in common.split(",") if o]
  out = {}
  for variant in variants:
    name, _, spec = variant.partition(":")
    if not name or name in out:
      raise SystemExit(f"error: variant names must be unique and non-empty, got {variant!r}")
    out[name] = shared + [o for o in spec.split(",") if o]
  return out


def row(name: str, workdir: str, cmd: list[str], cores: float) -> dict:
  """The table row of a finished run, from its results.json."""
  with open(os.path.join(workdir, "results.json")) as f:
    result = json.load(f)
  kind, report = next(iter(result["test"].items()))
  hours = result["train_seconds"] * cores / 3600
  return {"variant": name, "kind": kind, "bpd": report["bpd"], "stderr": report["bpd_stderr"],
          "steps": result["step"], "train_seconds": result["train_seconds"],
          "images_per_s": result.get("train_images_per_s"),
          "gain_per_cpu_hour": (math.log2(report["num_bins"]) - report["bpd"]) / hours if hours else None,
          "workdir": workdir, "command": "python -m genfam.main " + " ".join(cmd[3:])}


def print_table(rows: list[dict]) -> None:
  print("| variant | test bpd | steps | train min | images/s | bpd gained / CPU-hour | command |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['variant']} | {r['bpd']:.4f} ± {r['stderr']:.4f} ({r['kind']}) | {r['steps']} | "
          f"{r['train_seconds'] / 60:.1f} | {r['images_per_s'] or 0:.0f} | {r['gain_per_cpu_hour'] or 0:.2f} | "
          f"`{r['command']}` |")


def _die_with_parent():
  """In the child: receive SIGKILL when the worker that started it dies (Linux)."""
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except OSError:
    pass


def run_local(args) -> None:
  rows = []
  for name, overrides in parse_variants(args.variant, args.common).items():
    workdir = os.path.join(args.root, name)
    cmd = command(args.config, workdir, overrides)
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    rows.append(row(name, workdir, cmd, args.cores))
  with open(os.path.join(args.root, "sweep.json"), "w") as f:
    json.dump(rows, f, indent=2)
  print_table(rows)


# ---- distributed mode: an Optuna study in an RDB storage -------------------------------------------

def storage(args):
  import optuna
  warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries
  rdb = optuna.storages.RDBStorage(
      args.storage, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
      heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=args.max_retry))
  if args.storage.startswith("sqlite"):
    _serialize_sqlite_transactions(rdb.engine)
  return rdb


def _serialize_sqlite_transactions(engine):
  """Every transaction takes SQLite's write lock at BEGIN (BEGIN IMMEDIATE).

  Optuna claims a waiting trial by reading it as WAITING and writing RUNNING in one
  transaction, relying on SELECT ... FOR UPDATE, which SQLite ignores: two workers could
  both read WAITING and run the same trial (seen as 'Cannot tell a FAIL trial' when the
  second run found the workdir locked). PostgreSQL honours FOR UPDATE and needs nothing.
  """
  from sqlalchemy import event

  @event.listens_for(engine, "connect")
  def _no_implicit_begin(dbapi_connection, connection_record):
    dbapi_connection.isolation_level = None      # pysqlite: let the "begin" event issue BEGIN

  @event.listens_for(engine, "begin")
  def _begin_immediate(connection):
    connection.exec_driver_sql("BEGIN IMMEDIATE")

  engine.dispose()                                # connections made before the listeners are dropped


def open_study(args, create: bool = False):
  import optuna
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  if create:
    return optuna.create_study(study_name=args.study, storage=storage(args), direction="minimize",
                               load_if_exists=True)
  try:
    return optuna.load_study(study_name=args.study, storage=storage(args))
  except KeyError:
    raise SystemExit(f"error: no study {args.study!r} in {args.storage}: create it with --mode=enqueue") from None


def enqueue(args) -> None:
  """Creates the study (if new) and adds each variant once as a waiting trial."""
  study = open_study(args, create=True)
  variants = parse_variants(args.variant, args.common)
  known = study.user_attrs.get("variants", {})
  for name, overrides in variants.items():
    if name in known and known[name]["overrides"] != overrides:
      raise SystemExit(f"error: variant {name!r} is already in study {args.study!r} with other overrides "
                       f"({','.join(known[name]['overrides'])}): give it another name")
  known.update({name: {"overrides": overrides, "workdir": os.path.join(args.root, name), "config": args.config}
                for name, overrides in variants.items()})
  study.set_user_attr("variants", known)
  for name in variants:
    study.enqueue_trial({"variant": name}, user_attrs={"queued": True}, skip_if_exists=True)
  print(f"study {args.study!r}: {len(known)} variants, "
        f"{len(study.get_trials(deepcopy=False, states=[_state('WAITING')]))} waiting", flush=True)


def _state(name):
  import optuna
  return getattr(optuna.trial.TrialState, name)


class TrialFailed(Exception):
  """The trial's genfam.main run exited with an error (the trial is marked FAIL; the worker goes on)."""


def work(args) -> int:
  """Runs waiting trials of the study until none is left (or --max-trials); -> trials run."""
  import optuna
  study = open_study(args)
  variants = study.user_attrs.get("variants", {})
  done = []

  def objective(trial):
    if not trial.user_attrs.get("queued"):
      raise optuna.TrialPruned("not an enqueued variant")  # a worker never invents a trial
    name = trial.suggest_categorical("variant", sorted(variants))
    spec = variants[name]
    cmd = command(spec["config"], spec["workdir"], spec["overrides"])
    trial.set_user_attr("workdir", spec["workdir"])
    trial.set_user_attr("command", "python -m genfam.main " + " ".join(cmd[3:]))
    print(f"[worker {os.getpid()}] trial {trial.number}: {name}", flush=True)
    proc = subprocess.Popen(cmd, preexec_fn=_die_with_parent)
    preempted = []

    def forward(signum, frame):  # preemption: the run checkpoints and stops; so does the worker
      preempted.append(signum)
      proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
      code = proc.wait()
    finally:
      signal.signal(signal.SIGTERM, previous)
    if preempted:  # leave the trial RUNNING: its heartbeats stop, it goes stale and is retried elsewhere
      print(f"[worker {os.getpid()}] preempted during trial {trial.number}; it will be retried", flush=True)
      os._exit(128 + signal.SIGTERM)
    if code != 0:
      raise TrialFailed(f"{name}: genfam.main exited with {code}")
    r = row(name, spec["workdir"], cmd, args.cores)
    for key in ("kind", "stderr", "steps", "train_seconds", "images_per_s", "gain_per_cpu_hour"):
      trial.set_user_attr(key, r[key])
    done.append(name)
    return r["bpd"]

  def stop_when_queue_is_empty(study, trial):
    if (args.max_trials and len(done) >= args.max_trials) or not _waiting(study):
      study.stop()

  if _waiting(study) or _stale(study, args):
    study.optimize(objective, callbacks=[stop_when_queue_is_empty], catch=(TrialFailed,))
  return len(done)


def _waiting(study) -> bool:
  return bool(study.get_trials(deepcopy=False, states=[_state("WAITING")]))


def _stale(study, args) -> bool:
  """Whether a running trial has missed its heartbeats (a killed worker's), so a retry may be due."""
  import optuna
  optuna.storages.fail_stale_trials(study)
  return _waiting(study)


def report(args) -> list[dict]:
  """The table of the study's finished trials (one per variant, latest first if retried)."""
  study = open_study(args)
  rows = {}
  for t in study.get_trials(deepcopy=False, states=[_state("COMPLETE")]):
    name = t.params["variant"]
    rows[name] = {"variant": name, "kind": t.user_attrs["kind"], "bpd": t.value, "stderr": t.user_attrs["stderr"],
                  "steps": t.user_attrs["steps"], "train_seconds": t.user_attrs["train_seconds"],
                  "images_per_s": t.user_attrs["images_per_s"],
                  "gain_per_cpu_hour": t.user_attrs.get("gain_per_cpu_hour"),
                  "workdir": t.user_attrs["workdir"], "command": t.user_attrs["command"], "trial": t.number}
  counts = {s: len(study.get_trials(deepcopy=False, states=[_state(s)]))
            for s in ("COMPLETE", "RUNNING", "WAITING", "FAIL", "PRUNED")}
  out = [rows[k] for k in sorted(rows)]
  print_table(out)
  print("trials: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items()), flush=True)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mode", choices=["local", "enqueue", "worker", "report"], default="local")
  parser.add_argument("--config")
  parser.add_argument("--root")
  parser.add_argument("--common", default="", help="comma-separated key=value overrides for every variant")
  parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,key=value")
  parser.add_argument("--cores", type=float, default=float(os.cpu_count() or 1),
                      help="CPU cores a run uses (for CPU-hours)")
  parser.add_argument("--storage", help="Optuna RDB URL: sqlite:///sweep.db or "
                      "postgresql+psycopg2://user@host/db")
  parser.add_argument("--study", default="genfam-sweep")
  parser.add_argument("--max-trials", type=int, default=0, help="worker: stop after this many trials (0: no limit)")
  parser.add_argument("--heartbeat-interval", type=int, default=30, help="seconds between a worker's heartbeats")
  parser.add_argument("--grace-period", type=int, default=120,
                      help="seconds without a heartbeat after which a running trial is stale and retried")
  parser.add_argument("--max-retry", type=int, default=3, help="how often a stale trial is retried")
  args = parser.parse_args(argv)
  if args.mode in ("local", "enqueue") and not (args.config and args.root and args.variant):
    parser.error(f"--mode={args.mode} needs --config, --root and at least one --variant")
  if args.mode != "local" and not args.storage:
    parser.error(f"--mode={args.mode} needs --storage (sqlite:///FILE or postgresql://...)")
  if args.mode == "local":
    run_local(args)
  elif args.mode == "enqueue":
    enqueue(args)
  elif args.mode == "worker":
    print(f"worker {os.getpid()}: ran {work(args)} trials", flush=True)
  else:
    report(args)


if __name__ == "__main__":
  main()
