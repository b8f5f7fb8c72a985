"""Frozen models: a trained workdir's parameters and pure functions, for other models.

A family or evaluation that needs a trained model (CLIP's text encoder for a
text-conditional family, the domain classifier's features for FID) names the
workdir in its config, e.g. `model.text_encoder_workdir`, and calls

  frozen = load_frozen(config.model.text_encoder_workdir, "clip", key="model.text_encoder_workdir")
  embed = frozen.functions["encode_text"](frozen.params, tokens)   # [B, L] -> [B, E]

The workdir's own config.json rebuilds the model (through the registry, like
the loop), and its latest good checkpoint is restored through the same
Checkpointer that wrote it (a corrupt latest step falls back to the previous
one). The parameters are the family's `eval_params` (EMA weights where kept);
the functions are its `exports`. A missing workdir, a workdir of another model
or dataset, or a checkpoint that does not fit, is a one-line GenfamError with
the command that trains the right one.
"""
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genfam import registry
from genfam.data import sources
from genfam.errors import GenfamError
from genfam import sharding
from genfam.loop.checkpointing import Checkpointer
from genfam.settings import config_files


class Frozen(NamedTuple):
  """A restored model: its config, dataset spec, parameters, exported functions and step."""
  config: ml_collections.ConfigDict
  spec: Any
  params: Any
  functions: Mapping[str, Callable[..., Any]]
  step: int


def train_command(config_name: str, workdir: str, dataset: str = "") -> str:
  """`python -m genfam.main --config=configs/<name>.py --workdir=<workdir> [--config.data.name=<dataset>]`."""
  data = f" --config.data.name={dataset}" if dataset else ""
  return f"python -m genfam.main --config=configs/{config_name}.py --workdir={workdir or 'DIR'}{data}"


def example_batch(spec, batch_size: int) -> dict:
  """Zeros of a batch's shapes and dtypes (enough to shape a train state with jax.eval_shape)."""
  return {"image": np.zeros((batch_size, *spec.image_shape), np.uint8),
          "label": np.zeros((batch_size,), np.int32),
          "caption": np.zeros((batch_size, spec.caption_length), np.int32),
          "attributes": np.zeros((batch_size, spec.num_attributes), np.int32)}


def load_frozen(workdir: str, config_name: str, *, dataset: str = "", key: str = "") -> Frozen:
  """Restores the model trained by configs/<config_name>.py in `workdir`.

  config_name: 'clip', 'classifier', ...: the workdir must hold a model of that
      config file's family.
  dataset: if given, the dataset the model must have been trained on.
  key: the config key that named the workdir, for the error messages.
  """
  expected_family = config_files.load(config_name).family
  where = f"{key}={workdir!r}" if key else f"workdir {workdir!r}"
  command = train_command(config_name, workdir, dataset)
  if not workdir:
    raise GenfamError(f"no {expected_family} workdir given{f' ({key} is empty)' if key else ''}: train one with "
                      f"`{command}` and pass it{f' as --config.{key}=DIR' if key else ''}")
  config = config_files.saved(workdir)
  if config is None:
    raise GenfamError(f"no trained {expected_family} model in {where} (no config.json): train it with `{command}`")
  if config.get("family") != expected_family:
    raise GenfamError(f"{where} holds a {config.get('family')!r} model, not a {expected_family!r} one: "
                      f"name a workdir trained with `{command}`")
  if dataset and config.data.name != dataset:
    raise GenfamError(f"{where} holds a {expected_family} trained on {config.data.name!r}, not {dataset!r}: "
                      f"train one with `{command}`")
  spec = sources.dataset_spec(config.data.name)
  family = registry.make_family(config, spec)
  replicated = sharding.replicated(sharding.data_mesh())
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                          jax.eval_shape(family.init, jax.random.PRNGKey(0),
                                         example_batch(spec, config.data.batch_size)))
  checkpointer = Checkpointer(workdir, config, keep=config.train.keep_checkpoints)
  try:
    restored = checkpointer.restore_latest(abstract)
  except GenfamError as e:
    raise GenfamError(f"{where} cannot be loaded ({e}); train it again with `{command}`") from None
  finally:
    checkpointer.close()
  if restored is None:
    raise GenfamError(f"no checkpoint of the {expected_family} model in {where}: train it with `{command}`")
  state, _, meta = restored
  return Frozen(config=config, spec=spec, params=family.eval_params(state), functions=dict(family.exports or {}),
                step=int(meta["step"]))


def text_encoder(workdir: str, dataset: str, key: str = "model.text_encoder_workdir") -> Callable:
  """The frozen CLIP text encoder of `workdir` (configs/clip.py, trained on `dataset`), for a
  family to call: tokens int32 [B, L] -> pooled unit-norm embeddings float32 [B, E], no gradient.
  Read once, when the family is built; the family touches no file after that."""
  loaded = load_frozen(workdir, "clip", dataset=dataset, key=key)
  encode, params = loaded.functions["encode_text"], loaded.params
  return lambda tokens: jax.lax.stop_gradient(jnp.asarray(encode(params, tokens), jnp.float32))
