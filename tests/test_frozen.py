"""Frozen models: a trained CLIP restored from its workdir gives the same encodings
as the run that trained it; a missing, wrong or empty workdir is a one-line error
naming the command that trains the right one."""
import json
import shutil

import numpy as np
import pytest

from genfam.data import captions
from genfam.errors import GenfamError
from genfam.loop.frozen import load_frozen
from genfam.loop import train
from tests.conftest import load_config


@pytest.fixture(scope="module")
def clip_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("clip")
  config = load_config("clip")
  config.train.num_steps = 2
  config.train.eval_every = 0
  train.train_and_evaluate(config, str(workdir))
  return workdir


def test_frozen_clip_encodes_as_the_trained_run(clip_workdir):
  frozen = load_frozen(str(clip_workdir), "clip", dataset="digits")
  assert frozen.step == 2 and frozen.config.family == "clip" and frozen.spec.name == "digits"
  tokens = np.stack([captions.encode_sentence(s, frozen.spec) for s in ("a dark digit 3", "a photo of a digit 7")])
  text = frozen.functions["encode_text"](frozen.params, tokens)
  np.testing.assert_allclose(np.linalg.norm(text, axis=-1), 1.0, rtol=1e-5)
  # the same parameters the loop restores for --mode=eval
  run = train.Run(load_config("clip"), str(clip_workdir))
  state, _, _ = run.restore_or_fail()
  expected = run.family.exports["encode_text"](run.family.eval_params(state), tokens)
  np.testing.assert_array_equal(text, expected)
  images = np.zeros((2, *frozen.spec.image_shape), np.uint8)
  assert frozen.functions["encode_image"](frozen.params, images).shape == text.shape


def test_missing_workdir_names_the_command(tmp_path):
  with pytest.raises(GenfamError) as e:
    load_frozen(str(tmp_path / "nowhere"), "clip", key="model.text_encoder_workdir")
  message = str(e.value)
  assert "\n" not in message and "model.text_encoder_workdir" in message
  assert f"python -m genfam.main --config=configs/clip.py --workdir={tmp_path / 'nowhere'}" in message


def test_empty_key_names_the_flag():
  with pytest.raises(GenfamError, match=r"--config.model.text_encoder_workdir=DIR"):
    load_frozen("", "clip", key="model.text_encoder_workdir")


def test_wrong_model_or_dataset_is_refused(clip_workdir, tmp_path):
  with pytest.raises(GenfamError, match=r"holds a 'clip' model, not a 'classifier' one.*configs/classifier.py"):
    load_frozen(str(clip_workdir), "classifier")
  with pytest.raises(GenfamError, match=r"trained on 'digits', not 'fashion_mnist'.*--config.data.name=fashion_mnist"):
    load_frozen(str(clip_workdir), "clip", dataset="fashion_mnist")
  # a config.json without any checkpoint
  (tmp_path / "config.json").write_text(json.dumps(load_config("clip").to_dict()))
  with pytest.raises(GenfamError, match=r"no checkpoint of the clip model.*configs/clip.py"):
    load_frozen(str(tmp_path), "clip")


def test_incompatible_checkpoint_is_refused(clip_workdir, tmp_path):
  """A config.json whose model does not fit the saved checkpoint: refused, with the command."""
  workdir = tmp_path / "copy"
  shutil.copytree(clip_workdir, workdir)
  config = json.loads((workdir / "config.json").read_text())
  config["model"]["embed_dim"] = 2 * config["model"]["embed_dim"]
  (workdir / "config.json").write_text(json.dumps(config))
  with pytest.raises(GenfamError, match=r"cannot be loaded.*incompatible config.*configs/clip.py"):
    load_frozen(str(workdir), "clip")


def test_only_configs_that_name_a_text_encoder_are_handed_one():
  """The image-GPT's caption model embeds caption tokens itself (its config names no encoder), so
  the loop builds it without a CLIP workdir; a caption DDPM with an empty workdir is refused."""
  from genfam.data import sources
  from genfam.errors import GenfamError
  from genfam.loop import frozen as loop_frozen
  from tests.conftest import load_config
  config = load_config("igpt")
  config.model.condition = "caption"
  spec = sources.dataset_spec(config.data.name)
  assert "encode_text" not in loop_frozen.family_inputs(config, spec)
  caption_ddpm = load_config("ddpm", "caption_smoke")
  caption_ddpm.model.text_encoder_workdir = ""
  with pytest.raises(GenfamError, match="text_encoder_workdir"):
    loop_frozen.family_inputs(caption_ddpm, spec)
