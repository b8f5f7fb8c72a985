"""The defects a new user met (issue 31), each fixed with a test: conditional sampling of an
unconditional model, a mistyped config variant, a refused command leaving files behind, an
evaluation batch padded to eval.batch_size, the step a corrupt workdir's evaluation took,
notebooks run from the repository root, --out relative to the workdir, and the GAN's
optimizers ignoring optim keys. In-process where that checks the same thing; the
subprocess and notebook tests are marked slow."""
import fcntl
import logging
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import main as cli
from genfam import registry, sharding
from genfam.data import sources
from genfam.errors import GenfamError
from genfam.evaluation import evaluate
from genfam.families import gan, igpt
from genfam.family import Family, sample_condition
from genfam.loop import train
from genfam.loop import workdir as workdir_guard
from tests.conftest import REPO, load_config


def _cli(args, cwd=REPO, **env):
  return subprocess.run([sys.executable, "-m", "genfam.main", *args], cwd=cwd, env=dict(os.environ, **env),
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A trained independent smoke workdir (steps 2, 4, 6 checkpointed); copy it to change it."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  config = load_config("independent")
  config.train.eval_every = 0
  train.train_and_evaluate(config, workdir)
  return workdir


def _copy(trained, tmp_path) -> str:
  return shutil.copytree(trained, str(tmp_path / "run"))

# ---------------------------------------------------------------------------------------------
# The GAN's optimizers honour every optim key.

# optim key -> a value unlike the smoke config's, and which optimizers (G, D) it must change.
GAN_OPTIM_CHANGES = {
    "learning_rate": (1e-2, (True, False)),
    "d_learning_rate": (1e-2, (False, True)),
    "warmup_steps": (2, (True, True)),
    "decay_steps": (3, (True, True)),
    "clip_norm": (1e-3, (True, True)),
    "weight_decay": (0.5, (True, True)),
    "b1": (0.0, (True, True)),
    "b2": (0.5, (True, True)),
}


def _after_steps(tx, steps: int = 3):
  """Parameters after `steps` updates of `tx` on gradients that change from step to step."""
  params = {"w": jnp.linspace(0.5, 2.0, 4)}
  state = tx.init(params)
  for t in range(steps):
    grads = {"w": jnp.array([1.0, -2.0, 3.0, 0.5]) * (t + 1) * (-1.0) ** t}
    updates, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  return np.asarray(params["w"])


def test_every_optim_key_changes_the_gan_optimizers():
  config = load_config("gan")
  base = [_after_steps(tx) for tx in gan.optimizers(config.optim)]
  assert set(GAN_OPTIM_CHANGES) >= set(config.optim) - {"ema_decay"}, "a new optim key: add it here"
  for key, (value, expected) in GAN_OPTIM_CHANGES.items():
    changed = config.copy_and_resolve_references()
    changed.optim[key] = value
    got = [_after_steps(tx) for tx in gan.optimizers(changed.optim)]
    assert tuple(not np.allclose(g, b, rtol=0, atol=1e-9) for g, b in zip(got, base)) == expected, key


def test_the_gan_family_steps_with_the_configured_schedule():
  """With optim.decay_steps the first step's learning rate is 0 (the cosine schedule's warm-up
  start): the family's first update leaves both networks as they were (without it they move:
  tests/test_gan.py). The old optimizers ignored decay_steps and moved them."""
  from tests.test_gan import DIGITS, _batch
  batch = _batch()
  config = load_config("gan")
  config.optim.decay_steps = 2
  family = gan.make_family(config, DIGITS)
  state = family.init(jax.random.key(0), batch)
  new, _ = jax.jit(family.update)(state, batch, jax.random.key(1))
  for before, after in ((state.g_params, new.g_params), (state.d_params, new.d_params)):
    jax.tree.map(np.testing.assert_array_equal, before, after)


# ---------------------------------------------------------------------------------------------
# Evaluation batches are sized to what is evaluated.

@pytest.fixture(scope="module")
def digits_test():
  return sources.load(load_config("independent").data).sources["test"]


def _recording(shapes):
  """A likelihood with dequantization-like noise, row by row: u ~ U(0, 1) of the image's shape."""
  def fn(params, batch, rng):
    shapes.append(batch["image"].shape[0])
    u = jax.random.uniform(rng, batch["image"].shape)
    bpd = jnp.mean(batch["image"].astype(jnp.float32) + u, axis=(1, 2, 3))
    return {"bpd": bpd, "noise_bpd": jnp.mean(u, axis=(1, 2, 3))}
  return fn


@pytest.mark.parametrize("num_examples", [5, 16, 0])
def test_the_evaluated_batch_follows_the_number_of_examples(digits_test, num_examples):
  shapes = []
  report = evaluate.likelihood_report(_recording(shapes), None, digits_test, jax.random.key(0), sharding.data_mesh(),
                                      kind="exact", num_bins=17, batch_size=32, num_examples=num_examples)
  devices = jax.device_count()
  total = num_examples or len(digits_test)
  assert set(shapes) == {min(32, -(-total // devices) * devices)}
  assert report["num_examples"] == total


def test_a_sized_batch_gives_the_padded_batch_values(digits_test):
  """5 examples evaluated in a batch of 5 rows get the values they had as the first rows of a
  batch padded to eval.batch_size (32): each row's noise comes from its position."""
  fn = _recording([])
  rng = jax.random.key(3)
  report = evaluate.likelihood_report(fn, None, digits_test, rng, sharding.data_mesh(), kind="exact", num_bins=17,
                                      batch_size=32, num_examples=5)
  images = np.stack([np.asarray(digits_test[i]["image"]) for i in range(5)] + [np.asarray(digits_test[0]["image"])] * 27)
  padded = fn(None, {"image": images}, jax.random.fold_in(jax.random.fold_in(rng, 0), 0))
  np.testing.assert_allclose(report["bpd"], float(np.mean(np.asarray(padded["bpd"])[:5], dtype=np.float64)), rtol=1e-6)
  np.testing.assert_allclose(report["noise_bpd"], float(np.mean(np.asarray(padded["noise_bpd"])[:5])), rtol=1e-6)


def test_a_vae_iwae_bound_on_few_images_is_unchanged_by_the_sized_batch(digits_test):
  """The VAE's IWAE bound (the issue's case) on 4 images: a batch of 4 rows gives the values of
  the first 4 rows of a batch of eval.batch_size (here 8)."""
  from genfam.registry import make_family
  config = load_config("vae")
  spec = sources.load(config.data).spec
  family = make_family(config, spec)
  images = np.stack([np.asarray(digits_test[i]["image"]) for i in range(4)])
  labels = np.asarray([int(digits_test[i]["label"]) for i in range(4)], np.int32)
  batch = {"image": images, "label": labels}
  params = family.eval_params(family.init(jax.random.key(0), batch))
  kind, fn = next(iter(family.extra_likelihoods.items()))
  assert kind.startswith("iwae-")
  rng = jax.random.key(7)
  report = evaluate.likelihood_report(fn, params, digits_test, rng, sharding.data_mesh(), kind=kind, num_bins=17,
                                      batch_size=8, num_examples=4)
  padded = {"image": np.concatenate([images, images[:1].repeat(4, 0)]),
            "label": np.concatenate([labels, labels[:1].repeat(4)])}
  want = np.asarray(jax.jit(fn)(params, padded, jax.random.fold_in(jax.random.fold_in(rng, 0), 0))["bpd"])[:4]
  np.testing.assert_allclose(report["bpd"], float(np.mean(want, dtype=np.float64)), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Conditional samples from a model that would ignore the condition are refused.

def _family(name, **model):
  config = load_config(name)
  for key, value in model.items():
    config.model[key] = value
  return config, registry.make_family(config, sources.load(config.data).spec)


def test_a_caption_or_labels_for_a_model_that_ignores_them_are_refused():
  config, unconditional = _family("independent")
  with pytest.raises(GenfamError, match=r"^--caption needs a caption-conditional model, but this independent model "
                                        r"samples unconditionally .*configs/ddpm.py:caption, configs/gan.py:caption"):
    train.check_sample_condition(unconditional, config, "a small dark sandal")
  config.sample.conditional = True
  with pytest.raises(GenfamError, match=r"^sample.conditional=True asks for samples by label, but this independent "
                                        r"model is unconditional .*--config.sample.conditional=False"):
    train.check_sample_condition(unconditional, config)
  labelled_config, labelled = _family("independent", class_conditional=True)
  labelled_config.sample.conditional = True
  train.check_sample_condition(labelled, labelled_config)  # labels for a label model
  with pytest.raises(GenfamError, match=r"samples by label and would ignore the caption"):
    train.check_sample_condition(labelled, labelled_config, "a small dark sandal")
  captioned = unconditional._replace(likelihood_condition="caption")
  train.check_sample_condition(captioned, labelled_config, "a small dark sandal")


def test_a_label_mixture_samples_by_label():
  """DDPM's likelihood is the label mixture (unconditional), its samples are drawn by label: its
  default sample.conditional=True is accepted, a caption is not."""
  config, ddpm = _family("ddpm")
  assert ddpm.likelihood_condition == "" and sample_condition(ddpm) == "label" and config.sample.conditional
  train.check_sample_condition(ddpm, config)
  with pytest.raises(GenfamError, match="samples by label and would ignore the caption"):
    train.check_sample_condition(ddpm, config, "a bag")
  assert sample_condition(Family(name="x", init=None, update=None, eval_params=None, log_likelihood=None,
                                 likelihood_kind="", sample=None, likelihood_condition="label")) == "label"


def test_the_configs_named_for_captions_are_caption_conditional():
  assert load_config("ddpm", "caption").model.condition == "caption"
  assert load_config("gan", "caption").model.condition == "caption"
  config = load_config("igpt")
  config.model.condition = "caption"
  assert igpt.condition_of(config.model) == "caption"
  for name in ("configs/ddpm.py:caption", "configs/gan.py:caption", "configs/igpt.py"):
    assert name in train.CAPTION_CONFIGS
  for name, variant in (("code_prior", "caption"), ("latent_diffusion", "caption"), ("aligndraw", "")):
    config = load_config(name, variant)   # (AlignDRAW is always caption-conditional: no condition key)
    assert config.model.get("condition", "caption") == "caption" and config.family == name, name
    assert f"configs/{name}.py{':' + variant if variant else ''}" in train.CAPTION_CONFIGS


def test_sampling_with_a_caption_from_an_unconditional_workdir_is_refused(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  before = sorted(os.listdir(workdir))
  config = load_config("independent")
  with pytest.raises(GenfamError, match="--caption needs a caption-conditional model"):
    train.sample_workdir(config, workdir, "x.png", caption="a small dark sandal")
  config.sample.conditional = True
  with pytest.raises(GenfamError, match="sample.conditional=True asks for samples by label"):
    train.sample_workdir(config, workdir, "x.png")
  assert sorted(os.listdir(workdir)) == before


# ---------------------------------------------------------------------------------------------
# A mistyped config variant is one line naming the variants.

def test_a_mistyped_variant_names_the_variants():
  path = os.path.join(REPO, "configs", "glow.py")
  assert cli._config_key_error([f"--config={path}:smok"]) == (
      f"unknown variant 'smok' of configs/glow.py; use 'smoke' or nothing: did you mean --config={path}:smoke?")
  ddpm = os.path.join(REPO, "configs", "ddpm.py")
  assert "did you mean --config=" + ddpm + ":caption_smoke?" in cli._config_key_error(["--config", f"{ddpm}:caption_smok"])
  assert "'smoke'" in cli._config_key_error([f"--config={os.path.join(REPO, 'configs', 'gan.py')}:x"])
  assert cli._config_key_error([f"--config={path}:smoke"]) is None


@pytest.mark.slow
def test_cli_mistyped_variant_is_one_line(tmp_path):
  out = _cli(["--config=configs/glow.py:smok", f"--workdir={tmp_path / 'run'}"])
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert out.stderr.strip() == ("error: unknown variant 'smok' of configs/glow.py; use 'smoke' or nothing: "
                                "did you mean --config=configs/glow.py:smoke?")
  assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# A refused command leaves nothing behind.

def test_refusals_before_anything_is_created(tmp_path):
  workdir = str(tmp_path / "runs" / "new")
  for key, value in (("data.batch_size", 0), ("optim.learning_rate", -1e-3)):
    config = load_config("independent")
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(GenfamError, match=rf"--config\.{key}="):
      cli.refuse_early(config, workdir, "train")
  for mode in ("eval", "sample"):
    with pytest.raises(GenfamError, match=r"no checkpoint in .*new/checkpoints: train first"):
      cli.refuse_early(load_config("independent"), workdir, mode)
  assert os.listdir(tmp_path) == []


def test_a_refused_command_removes_the_workdir_it_created(tmp_path):
  """Refused after the lock file and the workdir (and a folder above it) were created: none remains."""
  workdir = str(tmp_path / "runs" / "new")
  config = load_config("independent")
  config.sample.conditional = True  # refused when the family is built, inside the lock
  with pytest.raises(GenfamError, match="sample.conditional=True"):
    with workdir_guard.RefusalLeavesNothing(workdir) as guard:
      train.train_and_evaluate(config, workdir, on_start=lambda: guard.start("the command"))
  assert os.listdir(tmp_path) == []


def test_a_refused_command_leaves_an_existing_workdir_as_it_was(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  os.remove(os.path.join(workdir, workdir_guard.LOCK_FILE))
  before = {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)}
  other = load_config("independent")
  other.model.class_conditional = True
  with pytest.raises(GenfamError, match="incompatible config"):
    with workdir_guard.RefusalLeavesNothing(workdir) as guard:
      train.train_and_evaluate(other, workdir, on_start=lambda: guard.start("the command"))
  assert {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)} == before


def test_a_started_command_is_recorded_and_keeps_its_files(tmp_path):
  workdir = str(tmp_path / "new")
  with pytest.raises(GenfamError, match="diverged"):
    with workdir_guard.RefusalLeavesNothing(workdir) as guard:
      guard.start("python -m genfam.main --config=x")
      open(os.path.join(workdir, "metrics.jsonl"), "w").close()
      raise GenfamError("diverged")  # e.g. non-finite steps, after the work started
  assert sorted(os.listdir(workdir)) == ["commands.txt", "metrics.jsonl"]
  assert open(os.path.join(workdir, "commands.txt")).read() == "python -m genfam.main --config=x\n"


def test_a_workdir_in_use_by_another_run_is_left_alone(tmp_path):
  """Refused because another run holds the lock of a workdir that did not exist when this command
  began: that run's files stay."""
  workdir = str(tmp_path / "new")
  guard = workdir_guard.RefusalLeavesNothing(workdir)  # begins before the other run
  os.makedirs(os.path.join(workdir, "checkpoints"))   # the other run's
  with open(os.path.join(workdir, workdir_guard.LOCK_FILE), "a") as held:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(GenfamError, match="in use"):
      with guard:
        with workdir_guard.lock(workdir):
          pass
  assert sorted(os.listdir(workdir)) == [workdir_guard.LOCK_FILE, "checkpoints"]


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--config.data.batch_size=0"], ["--config.optim.learning_rate=-0.001"],
                                  ["--mode=eval"], ["--mode=sample"], ["--mode=sample", "--caption=a bag"]])
def test_cli_refused_commands_leave_nothing(tmp_path, args):
  out = _cli(["--config=configs/independent.py:smoke", f"--workdir={tmp_path / 'runs' / 'new'}", *args])
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")
  assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# --mode=eval on a corrupt latest checkpoint: the step evaluated, and genfam's line alone.

def _corrupt_arrays(workdir: str, step: int) -> None:
  """Garbage in step `step`'s array files; its metadata stays readable, so orbax fails reading."""
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", str(step), "state")):
    for name in files:
      if name not in ("_METADATA", "_sharding", "manifest.ocdbt"):
        with open(os.path.join(root, name), "w") as f:
          f.write("garbage")


class _Records(logging.Handler):
  def __init__(self):
    super().__init__(logging.DEBUG)
    self.records = []

  def emit(self, record):
    self.records.append(record)


def test_eval_of_a_corrupt_latest_checkpoint_says_the_step_and_only_genfams_line(trained, tmp_path, capsys):
  workdir = _copy(trained, tmp_path)
  _corrupt_arrays(workdir, 6)
  with open(os.path.join(workdir, "checkpoints", "4", "_CHECKPOINT_METADATA"), "w") as f:
    f.write("garbage")  # orbax logs an error of its own for this one (and still reads step 4)
  records = _Records()
  logging.getLogger().addHandler(records)
  try:
    summary = train.evaluate_workdir(load_config("independent"), workdir)
  finally:
    logging.getLogger().removeHandler(records)
  assert summary["step"] == 4
  out = capsys.readouterr().out
  assert f"evaluating step 4 (the latest readable checkpoint in {workdir}/checkpoints)" in out
  assert f"step 4 evaluated: {workdir}/eval_step_4.json" in out
  shown = [r for r in records.records if r.levelno >= logging.WARNING]
  assert [r.getMessage().split(" (")[0] for r in shown] == ["checkpoint step 6 is unreadable"], [
      (r.name, r.getMessage()[:200]) for r in shown]
  assert os.listdir(os.path.join(workdir, "corrupt_checkpoints"))[0].startswith("6.")


@pytest.mark.slow
def test_cli_eval_of_a_corrupt_latest_checkpoint(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  _corrupt_arrays(workdir, 6)
  out = _cli(["--config=configs/independent.py:smoke", f"--workdir={workdir}", "--mode=eval"])
  assert out.returncode == 0, out.stderr[-2000:]
  assert "evaluating step 4 " in out.stdout
  problems = [line for line in out.stderr.splitlines() if line.strip()]
  assert len(problems) == 1 and "checkpoint step 6 is unreadable" in problems[0], out.stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# --out: a relative path is in the workdir.

def test_a_relative_out_is_in_the_workdir(trained, tmp_path, monkeypatch):
  workdir = _copy(trained, tmp_path)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  monkeypatch.chdir(elsewhere)
  config = load_config("independent")
  assert train.sample_workdir(config, workdir, "grid.png") == os.path.join(workdir, "grid.png")
  assert os.path.getsize(os.path.join(workdir, "grid.png")) > 0 and os.listdir(elsewhere) == []
  absolute = str(tmp_path / "absolute.png")
  assert train.sample_workdir(config, workdir, absolute) == absolute and os.path.exists(absolute)
  assert train.sample_workdir(config, workdir) == os.path.join(workdir, "samples_step_6.png")


# ---------------------------------------------------------------------------------------------
# The notebooks run from the repository root with their defaults.

@pytest.mark.slow
def test_notebooks_run_from_the_repository_root(trained):
  """`jupyter execute` starts the kernel in notebooks/: compare.ipynb with its default folder,
  inspect_run.ipynb with a workdir given relative to the repository root."""
  env = dict(os.environ, MPLBACKEND="Agg")
  env.pop("GENFAM_COMPARE_DIR", None)
  out = subprocess.run([sys.executable, "-m", "jupyter", "execute", "notebooks/compare.ipynb"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  env["GENFAM_WORKDIR"] = os.path.relpath(trained, REPO)
  out = subprocess.run([sys.executable, "-m", "jupyter", "execute", "notebooks/inspect_run.ipynb"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
