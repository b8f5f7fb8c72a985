"""Frozen models: a trained workdir's parameters and pure functions, for other models.

The loop's API to other runs' checkpoints. A family or evaluation that needs a trained
model (CLIP's text encoder for a text-conditional family, the domain classifier's
features for FID) names the workdir in its config, e.g. `model.text_encoder_workdir`;
the loop restores it here and hands over plain functions, so neither a family nor the
evaluation touches a checkpoint:

  frozen = load_frozen(config.model.text_encoder_workdir, "clip", key="model.text_encoder_workdir")
  embed = frozen.functions["encode_text"](frozen.params, tokens)   # [B, L] -> [B, E]

- `family_inputs(config, spec)`: what a family takes from other runs, restored: the frozen
  CLIP text encoder `encode_text` of a caption model (`model.condition='caption'`);
  `make_family` builds a family with them (`registry.make_family(config, spec, **inputs)`).
- `load_judges`: the classifier and CLIP that judge samples (`genfam.evaluation.sample_quality`).

The workdir's own config.json (saved by the run that trained it) rebuilds the model
(through the registry, like the loop): no config file of the repository is read, so an
installed genfam restores it from any directory. Its latest good checkpoint is restored
through the same Checkpointer that wrote it (a corrupt latest step falls back to the
previous one). The parameters are the family's `eval_params` (EMA weights where kept);
the functions are its `exports`. A missing workdir, a workdir of another model or
dataset, or a checkpoint that does not fit, is a one-line GenfamError with the command
that trains the right one.
"""
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genfam import registry, sharding
from genfam.data import sources
from genfam.errors import GenfamError
from genfam.evaluation.sample_quality import Judges
from genfam.family import Family
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
  """Restores the model trained by configs/<config_name>.py in `workdir`, from the workdir alone.

  config_name: 'clip', 'classifier': the workdir must hold a model of that family (the
      family configs/<config_name>.py trains; named in the error messages' command).
  dataset: if given, the dataset the model must have been trained on.
  key: the config key that named the workdir, for the error messages.
  """
  expected_family = config_name
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
  family = make_family(config, spec)   # with the frozen models it names itself (a noisy CLIP's text encoder)
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


def family_inputs(config, spec) -> dict:
  """What the family of `config` takes from outside its own parameters, restored once (files are
  read here, never by the family): 'encode_text', the frozen CLIP text encoder of
  model.text_encoder_workdir, for a model conditioned on captions through it (model.condition='caption'
  and a model.text_encoder_workdir key);
  'pilot', a function returning `pilot_batch`'s non-test images, for an evaluation with a
  per-evaluation setup (eval.is_timesteps > 0: the diffusion bound's importance sampler);
  'autoencoder', the `Frozen` stage-1 model of a two-stage family (model.autoencoder_workdir,
  trained by configs/<model.autoencoder_config>.py on the same dataset): its parameters and
  exported functions (encode / decode / its bound's terms), which the prior calls and never trains;
  'guide', the noise-conditional classifier or CLIP that steers a diffusion model's sampling
  (sample.guidance_form 'classifier' or 'clip'; `guide`), and for a noise-conditional CLIP
  (model.noise_conditional) its frozen text encoder 'encode_text'; 'generator', the `Frozen` GAN of
  model.generator_workdir (configs/gan.py) whose noise the style encoder regresses."""
  model, inputs = config.get("model", {}), {}
  if "autoencoder_workdir" in model:
    inputs["autoencoder"] = load_frozen(model.get("autoencoder_workdir", ""), model.get("autoencoder_config", ""),
                                        dataset=spec.name, key="model.autoencoder_workdir")
  if (model.get("condition", "") == "caption" or model.get("noise_conditional", False)) \
      and "text_encoder_workdir" in model:
    # (the image-GPT's caption model embeds the tokens itself: its config names no encoder;
    # a noise-conditional CLIP trains its image tower against this frozen text encoder)
    inputs["encode_text"] = text_encoder(model.get("text_encoder_workdir", ""), spec.name)
  if "generator_workdir" in model:   # the GAN's style encoder: the frozen GAN it inverts
    inputs["generator"] = load_frozen(model.get("generator_workdir", ""), "gan", dataset=spec.name,
                                      key="model.generator_workdir")
  if config.get("sample", {}).get("guidance_form", "free") in GUIDES:
    inputs["guide"] = guide(config, spec)
  if config.get("eval", {}).get("is_timesteps", 0) > 0:
    num, captioned = int(config.eval.get("is_pilot_examples", 8)), model.get("condition", "") == "caption"
    inputs["pilot"] = lambda: pilot_batch(config.data, num, captioned)
  return inputs


# The gradient-guidance forms of a diffusion model's sampling and the sample.* key naming each guide's workdir.
GUIDES = {"classifier": "guidance_classifier_workdir", "clip": "guidance_clip_workdir"}


def guide(config, spec) -> Callable:
  """The noise-conditional model of sample.guidance_form ('classifier': configs/classifier.py:noisy,
  'clip': configs/clip.py:noisy) from its sample.guidance_<form>_workdir, trained on the same dataset
  and the sampled model's diffusion schedule and T, as a plain function:
  guide(x_t float [B, H, W, C], t int [B], labels [B] or tokens [B, L]) -> [B], the log p(y | x_t, t)
  or the logit-scaled caption similarity whose x_t-gradient steers the sampler."""
  form, d = config.sample.guidance_form, config.diffusion
  key, workdir = f"sample.{GUIDES[form]}", config.sample.get(GUIDES[form], "")
  command = (f"python -m genfam.main --config=configs/{form}.py:noisy --workdir=DIR --config.data.name={spec.name} "
             f"--config.diffusion.schedule={d.schedule} --config.diffusion.num_steps={d.num_steps}"
             + (" --config.model.text_encoder_workdir=CLIP_DIR" if form == "clip" else ""))
  if not workdir:
    raise GenfamError(f"sample.guidance_form={form!r} needs a noise-conditional {form}: train one with `{command}` "
                      f"and pass --config.{key}=DIR")
  loaded = load_frozen(workdir, form, dataset=spec.name, key=key)
  trained_on = loaded.config.get("diffusion", {})
  if not loaded.config.model.get("noise_conditional", False) or (
      trained_on.get("schedule"), trained_on.get("num_steps")) != (d.schedule, d.num_steps):
    raise GenfamError(f"{key}={workdir!r} holds no noise-conditional {form} of this model's forward process "
                      f"({d.schedule}, T={d.num_steps}): train one with `{command}`")
  objective, params = loaded.functions["guidance_objective"], loaded.params
  return lambda x_t, t, condition: objective(params, x_t, t, condition)


def pilot_batch(data_config, num: int, with_captions: bool = False) -> dict:
  """The first `num` images of the validation split (if data.validation_examples > 0) or else of the
  training split, never test images, as one numpy batch {'image' uint8 [n, H, W, C], 'label' [n]
  [, 'caption' [n, L]]} (captions phrased as the evaluation's: epoch 0)."""
  import numpy as np
  from genfam.data import captions, pipeline
  loaded = sources.load(data_config)
  source = loaded.sources["validation"] if "validation" in loaded.sources else loaded.sources["train"]
  records = [source[i] for i in range(min(num, len(source)))]
  batch = {"image": np.stack([np.asarray(r["image"], np.uint8) for r in records]),
           "label": np.asarray([int(r["label"]) for r in records], np.int32)}
  if with_captions:
    batch["caption"] = np.stack([captions.example_caption(loaded.spec, pipeline.EVAL_CAPTION_SEED, i, 0,
                                                          int(r["label"]), r["attributes"])
                                 for i, r in enumerate(records)])
  return batch


def make_family(config, spec) -> Family:
  """The family of `config` for dataset `spec`, with the frozen models its config names
  (`family_inputs`): how the loop, and any tool, builds a family."""
  return registry.make_family(config, spec, **family_inputs(config, spec))


def load_judges(classifier_workdir: str, clip_workdir: str, dataset: str) -> Judges:
  """The models that judge samples (`genfam.evaluation.sample_quality`): the classifier
  (required) and CLIP (if `clip_workdir`) trained on `dataset`, restored."""
  classifier = load_frozen(classifier_workdir, "classifier", dataset=dataset, key="eval.classifier_workdir")
  clip = load_frozen(clip_workdir, "clip", dataset=dataset, key="eval.clip_workdir") if clip_workdir else None
  return Judges(classifier, clip)
