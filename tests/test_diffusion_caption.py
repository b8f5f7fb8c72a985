"""Caption-guided diffusion: the frozen text embedding conditions the U-Net (null embedding
dropped in with p_uncond), guidance w = 1 / 0 is the conditional / unconditional eps, a
sentence samples end to end through --mode=sample, and the bound says it is -log p(x | caption).

Unit tests use a stand-in text encoder; the end-to-end test trains configs/clip.py:smoke
(the module-scoped fixture of tests/test_frozen.py) and configs/ddpm.py:caption_smoke."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data import captions
from genfam.data.spec import DatasetSpec
from genfam.errors import GenfamError
from genfam.evaluation import evaluate
from genfam.families import diffusion
from genfam.loop import frozen, train
from tests.conftest import load_config
from tests.test_frozen import clip_workdir  # noqa: F401 (module-scoped fixture: a trained CLIP smoke workdir)

DIGITS = DatasetSpec("digits", (8, 8, 1), 17, tuple(f"digit {k}" for k in range(10)))
SENTENCES = ("a dark wide digit 7", "a photo of a small digit 1", "a light digit 0")


def _stand_in_text_encoder(tokens):  # int32 [B, L] -> [B, 6] unit norm: a fixed random table, mean over words
  table = jax.random.normal(jax.random.key(42), (DIGITS.vocab_size, 6))
  mask = (tokens > 0)[..., None]
  mean = jnp.sum(table[tokens] * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1)
  return mean / jnp.linalg.norm(mean, axis=-1, keepdims=True)


def _tokens(sentences=SENTENCES):  # -> int32 [N, L]
  return np.stack([captions.encode_sentence(s, DIGITS) for s in sentences])


def _config(variant="caption_smoke", **diffusion_keys):
  config = load_config("ddpm", variant)
  config.diffusion.update(diffusion_keys)
  return config


def _random_params(net, condition_dim, seed, scale=0.3):
  """Random weights in the net's shapes (zero-initialised output layers would hide the condition)."""
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32),
                                           jnp.zeros((1, condition_dim)))["params"])
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), shapes)


def _net_and_params(config):
  conditioning = diffusion.make_conditioning(config.model, DIGITS, _stand_in_text_encoder)
  learned = config.diffusion.variance == "learned"
  net = diffusion.make_net(config.model, DIGITS, learned, conditioning.dim)
  return conditioning, net, _random_params(net, conditioning.dim, 1), learned


def test_caption_changes_eps_and_p_uncond_one_gives_the_null_embedding():
  config = _config()
  conditioning, net, params, _ = _net_and_params(config)
  assert conditioning.kind == "caption" and conditioning.dim == 6 and net.condition_dim == 6
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  t = jnp.array([1, 5, 9])
  c = conditioning.for_sampling(_tokens())                                    # [3, 6]
  always_drop = net.clone(p_uncond=1.0, dropout=0.0)   # train=True, no other dropout

  @jax.jit
  def outputs(rng):
    apply = lambda module, cond, train, rngs=None: module.apply({"params": params}, x, t, cond, train, rngs=rngs)
    return (apply(net, c, False), apply(net, jnp.roll(c, 1, axis=0), False), apply(net, None, False),
            apply(always_drop, c, True, {"dropout": rng}))

  with_caption, other_caption, null, dropped = outputs(jax.random.key(3))
  assert not np.allclose(with_caption, other_caption, atol=1e-3), "the caption must change eps"
  assert not np.allclose(with_caption, null, atol=1e-3), "the null embedding is not a caption"
  np.testing.assert_allclose(dropped, null, rtol=1e-5, atol=1e-5)
  # the family's training batches are conditioned on their captions through the same encoder
  np.testing.assert_allclose(conditioning.of_batch({"caption": _tokens()}), c)


@pytest.mark.parametrize("variance", ["posterior", "learned"])
def test_guidance_one_is_conditional_and_zero_unconditional(variance):
  config = _config(**({"variance": "learned", "loss": "hybrid"} if variance == "learned" else {}))
  conditioning, net, params, learned = _net_and_params(config)
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  t = jnp.array([2, 10, 19])
  tokens = _tokens()
  call = lambda cond: diffusion._split_net_output(net.apply({"params": params}, x, t, cond, False), learned)
  conditional, unconditional = call(conditioning.for_sampling(tokens)), call(None)
  guided = lambda w: diffusion.guided_eps_fn(net, params, learned, conditioning, 3, tokens, w)(x, t)
  eps = lambda out: out[0] if learned else out
  np.testing.assert_allclose(eps(guided(1.0)), eps(conditional), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(eps(guided(0.0)), eps(unconditional), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(eps(guided(3.0)), eps(unconditional) + 3.0 * (eps(conditional) - eps(unconditional)),
                             rtol=1e-4, atol=1e-4)
  if learned:  # the variance's v comes from the conditional call
    np.testing.assert_allclose(guided(3.0)[1], conditional[1], rtol=1e-5, atol=1e-5)
  # no condition: the null embedding's eps
  np.testing.assert_allclose(eps(diffusion.guided_eps_fn(net, params, learned, conditioning, 3, None, 2.0)(x, t)),
                             eps(unconditional), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampler, variance", [("ddpm", "posterior"), ("ddim", "learned")])
def test_guided_samplers_run_from_captions(sampler, variance):
  config = _config(**({"variance": "learned", "loss": "hybrid"} if variance == "learned" else {}))
  conditioning, net, params, _ = _net_and_params(config)
  draw = diffusion.make_sampler(config, DIGITS, sampler=sampler, guidance=3.0, eta=1.0, conditioning=conditioning)
  samples = np.asarray(draw(params, jax.random.key(2), 3, jnp.asarray(_tokens())))
  assert samples.shape == (3, 8, 8, 1) and samples.dtype == np.uint8 and samples.max() <= 16


def test_bad_conditions_are_one_line():
  cases = [(_config("caption_smoke"), {"class_conditional": True}, "exclusive.*class_conditional=False"),
           (_config("caption_smoke"), {"condition": "words"}, "unknown model.condition"),
           (_config("caption_smoke", bound_condition="label"), {}, "bound_condition=caption"),
           (_config("smoke", bound_condition="caption"), {}, "model.condition=caption")]
  for config, model, match in cases:
    config.model.update(model)
    with pytest.raises(GenfamError, match=match) as e:
      diffusion.make_family(config, DIGITS, _stand_in_text_encoder)
    assert "\n" not in str(e.value)


def test_missing_text_encoder_workdir_is_one_line(tmp_path):
  config = _config()
  config.model.text_encoder_workdir = str(tmp_path / "nowhere")
  with pytest.raises(GenfamError) as e:
    frozen.make_family(config, DIGITS)   # as the loop builds it: the loop restores the encoder
  message = str(e.value)
  assert "\n" not in message and "model.text_encoder_workdir" in message
  assert f"--config=configs/clip.py --workdir={tmp_path / 'nowhere'}" in message


def test_label_model_refuses_caption_tokens():
  conditioning = diffusion.make_conditioning(load_config("ddpm").model, DIGITS)   # what its sampler calls
  assert conditioning.kind == "label"
  with pytest.raises(GenfamError, match="caption tokens given to a label-conditioned"):
    conditioning.for_sampling(_tokens())


@pytest.mark.slow
def test_caption_model_trains_reports_and_samples_a_sentence(clip_workdir, tmp_path, capsys):  # noqa: F811
  config = _config()
  config.model.text_encoder_workdir = str(clip_workdir)
  config.train.progress = False
  config.train.num_steps, config.train.checkpoint_every = 2, 2
  config.diffusion.sampled_t = 0            # the full bound only (the extra estimate is the smoke e2e's)
  config.model.channel_mult, config.model.attn_resolutions = (1,), ()   # one level: half the compile time
  config.sample.num, config.sample.guidance = 4, 2.0
  workdir = str(tmp_path / "ddpm")
  summary = train.train_and_evaluate(config, workdir)
  report = summary["test"]["vlb"]
  assert report["conditional_on"] == "caption" and "label_bpd" not in report and np.isfinite(report["bpd"])
  assert "conditional on caption: -log p(x | caption)" in evaluate.describe(summary["test"])
  assert os.path.exists(os.path.join(workdir, "samples.png"))   # conditioned on the first test captions
  grid = train.sample_workdir(config, workdir, os.path.join(workdir, "sentence.png"), caption=SENTENCES[0])
  assert grid and os.path.getsize(grid) > 0
  assert f"caption: {SENTENCES[0]!r}" in capsys.readouterr().out
