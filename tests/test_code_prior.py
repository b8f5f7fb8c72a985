"""The code prior (stage 2 of DALL-E's recipe, genfam/families/two_stage/code_prior.py).

Fast: on a toy dataset (4x4 images of 5 grey levels) with a stage-1 VQ-VAE of a 2x2 code grid
and 3 codes, so all 3^4 = 81 codes can be enumerated: the two-stage bound against the brute-force
-log2 sum_z p(z) p(x | z), its parts, the prior's normalisation, causality, the cached sampler
against the full forward pass, label and caption prefixes, bad input. Slow: both smoke configs
trained end to end through the loop (stage 1, then the prior on its workdir), evaluated and
sampled, and --mode=sample --caption through genfam.main.
"""
import itertools
import json
import math
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam import registry
from genfam.data.spec import DatasetSpec
from genfam.errors import GenfamError
from genfam.families import igpt
from genfam.families.two_stage import code_prior
from genfam.loop import frozen, train
from genfam.nets.transformer import Transformer, sample_tokens
from tests.conftest import REPO, load_config

VOCAB = tuple(f"w{i}" for i in range(11))
SPEC = DatasetSpec(name="toy", image_shape=(4, 4, 1), num_bins=5, class_names=("a", "b", "c"),
                   vocabulary=VOCAB, caption_length=5)
NUM_CODES, GRID = 3, (2, 2)


def _batch(num, seed=0):
  rng = np.random.default_rng(seed)
  caption = rng.integers(2, len(VOCAB), (num, SPEC.caption_length)).astype(np.int32)
  caption[:, 3:] = 0                                                          # padding
  return {"image": rng.integers(0, SPEC.num_bins, (num, *SPEC.image_shape)).astype(np.uint8),
          "label": rng.integers(0, SPEC.num_classes, num).astype(np.int32), "caption": caption}


def _stage_one(seed=0):
  """A randomly initialised VQ-VAE on SPEC (2x2 grid of 3 codes), as the loop hands it over."""
  c = load_config("vqvae")
  c.data.name = SPEC.name
  c.model.widths, c.model.blocks, c.model.codebook_size, c.model.code_dim = (4, 4), (0, 1), NUM_CODES, 2
  family = registry.make_family(c, SPEC)
  params = family.eval_params(jax.jit(family.init)(jax.random.PRNGKey(seed), _batch(8, seed)))
  return frozen.Frozen(config=c, spec=SPEC, params=params, functions=family.exports, step=0)


STAGE_ONE = None


def _autoencoder():
  global STAGE_ONE
  if STAGE_ONE is None:
    STAGE_ONE = _stage_one()
  return STAGE_ONE


PRIORS = {}


def _prior(condition="none", random_head=True, **sample):
  """(family, params, config) of a tiny code prior on the toy stage 1, with a random head
  (a non-uniform prior) unless random_head=False (the zero head: uniform over codes)."""
  key = (condition, random_head, tuple(sorted(sample.items())))
  if key in PRIORS:
    return PRIORS[key]
  c = load_config("code_prior")
  c.data.name = SPEC.name
  c.model.condition = condition
  c.model.width, c.model.num_heads, c.model.mlp_ratio = 16, 2, 2
  for k, v in sample.items():
    c.sample[k] = v
  family = registry.make_family(c, SPEC, autoencoder=_autoencoder())
  params = family.eval_params(jax.jit(family.init)(jax.random.PRNGKey(1), _batch(2)))
  if random_head:
    head = params["head"]["kernel"]
    params["head"]["kernel"] = jax.random.normal(jax.random.PRNGKey(2), head.shape)
  PRIORS[key] = family, params, c
  return PRIORS[key]


def _transformer(config, condition="none"):
  return igpt.make_model(config, SPEC, num_tokens=NUM_CODES, seq_len=GRID[0] * GRID[1])


ALL_CODES = np.array(list(itertools.product(range(NUM_CODES), repeat=4)), np.int32)   # [81, 4]


def _prefix(condition, batch):
  return igpt.prefix_of(condition, batch)


ENUMERATIONS = {}


def _enumeration(batch, condition, params, config):
  """-> (log p(z | prefix) [n, 81], log p(x | z) [n, 81]) in nats, float64, for every image of
  `batch` against all 81 codes (one jitted call each); computed once per condition and batch (a
  reference table, the same for both chex variants)."""
  key = (condition, id(params), np.asarray(batch["image"]).tobytes())
  if key not in ENUMERATIONS:
    ENUMERATIONS[key] = _enumerate(batch, condition, params, config)
  return ENUMERATIONS[key]


def _enumerate(batch, condition, params, config):
  ae = _autoencoder()
  n, m = len(batch["image"]), len(ALL_CODES)
  rows = {k: np.repeat(v, m, axis=0) for k, v in batch.items()}                          # [n * 81, ...]
  codes = np.tile(ALL_CODES, (n, 1))
  prefix, mask = _prefix(condition, rows)
  model = _transformer(config)
  log_pz = -jax.jit(lambda p, c, pre, ma: igpt.token_nll(model, p, c, pre, ma))(params, codes, prefix, mask)
  nll_bits = jax.jit(ae.functions["decoder_nll_bits"])(ae.params, rows["image"], codes.reshape(-1, *GRID))
  log_px_z = -math.log(2) * SPEC.num_dims * np.asarray(nll_bits, np.float64)
  return np.asarray(log_pz, np.float64).reshape(n, m), log_px_z.reshape(n, m)


class BoundTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_bound_against_brute_force_enumeration(self):
    """For each image x: the reported bound equals -log2 p(x | e(x)) / D + -log2 p(e(x)) / D with
    both terms from the enumeration table, it is >= -log2 sum_z p(z) p(x | z) / D over all 81
    codes, and sum_z p(z) = 1, unconditionally and given a label or a caption."""
    ae = _autoencoder()
    batch = _batch(4, seed=3)
    codes = np.asarray(ae.functions["encode"](ae.params, batch["image"])).reshape(4, -1)      # [4, 4]
    star = [int(np.flatnonzero((ALL_CODES == c).all(axis=1))[0]) for c in codes]
    to_bits = 1.0 / (SPEC.num_dims * math.log(2))
    for condition in ("none", "label", "caption"):
      family, params, config = _prior(condition)
      report = self.variant(family.log_likelihood)(params, batch, jax.random.PRNGKey(0))
      chex.assert_shape([report["bpd"], report["decoder_bpd"], report["prior_bpd"]], (4,))
      log_pz, log_px_z = _enumeration(batch, condition, params, config)
      np.testing.assert_allclose(np.exp(log_pz).sum(axis=1), 1.0, rtol=1e-5, err_msg=condition)
      true_bits = -np.logaddexp.reduce(log_pz + log_px_z, axis=1) * to_bits                 # [4]
      prior_bits = -log_pz[np.arange(4), star] * to_bits
      decoder_bits = -log_px_z[np.arange(4), star] * to_bits
      np.testing.assert_allclose(report["prior_bpd"], prior_bits, rtol=1e-5, atol=1e-6, err_msg=condition)
      np.testing.assert_allclose(report["decoder_bpd"], decoder_bits, rtol=1e-5, atol=1e-6, err_msg=condition)
      np.testing.assert_allclose(report["bpd"], prior_bits + decoder_bits, rtol=1e-5, err_msg=condition)
      assert np.all(np.asarray(report["bpd"]) >= true_bits - 1e-6), (condition, report["bpd"], true_bits)
      # the bound is tight exactly when p(z | x) puts all its mass on e(x); here it does not
      assert np.all(np.asarray(report["bpd"]) > true_bits + 1e-4), condition

  @chex.variants(with_jit=True, without_jit=True)
  def test_untrained_prior_gives_the_stage_one_uniform_elbo(self):
    """The zero head is uniform over codes: the bound is then the VQ-VAE's own ELBO under a
    uniform prior, h w log2 N / D = 4 log2 3 / 16 for the prior term."""
    ae = _autoencoder()
    family, params, _ = _prior(random_head=False)
    stage_one = registry.make_family(ae.config, SPEC)
    batch = _batch(5)
    ours = self.variant(family.log_likelihood)(params, batch, None)
    theirs = self.variant(stage_one.log_likelihood)(ae.params, batch, None)
    np.testing.assert_allclose(ours["prior_bpd"], 4 * math.log2(3) / 16, rtol=1e-5)
    np.testing.assert_allclose(ours["bpd"], theirs["bpd"], rtol=1e-5)
    np.testing.assert_allclose(ours["decoder_bpd"], theirs["recon_bpd"], rtol=1e-6)
    assert family.likelihood_kind == stage_one.likelihood_kind == "elbo"
    assert "upper bound" in family.likelihood_note


def test_training_lowers_the_prior_term_only():
  """The loss is prior_bpd; one update leaves the stage-1 model (closed over) untouched and
  moves the prior's parameters."""
  family, _, _ = _prior()
  batch = _batch(8)
  state = initial = family.init(jax.random.PRNGKey(0), batch)
  update = jax.jit(family.update)
  for step in range(3):
    new, metrics = update(state, batch, jax.random.PRNGKey(step))
    assert set(metrics) >= {"loss", "prior_bpd", "bits_per_code"}
    np.testing.assert_allclose(metrics["bits_per_code"], metrics["prior_bpd"] * 16 / 4, rtol=1e-6)
    state = new
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), state.params,
                       initial.params)
  assert max(jax.tree.leaves(moved)) > 0


def test_prior_is_causal():
  """Changing code i changes the logits of positions > i only (row j is p(z_j | z_<j))."""
  family, params, config = _prior("caption")
  model = _transformer(config)
  batch = _batch(3)
  prefix, mask = _prefix("caption", batch)
  codes = ALL_CODES[[5, 40, 77]]
  probes = []
  for i in range(4):
    changed = codes.copy()
    changed[:, i] = (codes[:, i] + 1) % NUM_CODES
    probes.append(changed)
  # the base codes and the 4 probes in one call: [5 * 3, 4, N]
  tile = lambda a: np.tile(np.asarray(a), (5, 1))  # noqa: E731
  all_logits = np.asarray(jax.jit(model.apply)({"params": params}, np.concatenate([codes] + probes),
                                               tile(prefix), tile(mask))).reshape(5, 3, 4, NUM_CODES)
  base = all_logits[0]                                                                  # [3, 4, N]
  for i in range(4):
    logits = all_logits[1 + i]
    np.testing.assert_allclose(logits[:, :i + 1], base[:, :i + 1], rtol=1e-5, atol=1e-6)
    if i < 3:
      assert np.abs(np.asarray(logits[:, i + 1:] - base[:, i + 1:])).max() > 1e-4


def test_cached_decoding_equals_the_full_forward_pass():
  """Teacher-forced cached decoding (prefill, then one Transformer.decode per code) gives the
  full forward pass's logits, unconditionally and with a label or caption prefix; the cached and
  uncached samplers draw the same codes from the same key."""
  batch = _batch(4)
  codes = jnp.asarray(ALL_CODES[[0, 13, 50, 80]])
  for condition in ("none", "label", "caption"):
    _, params, config = _prior(condition)
    model = _transformer(config)
    prefix, mask = _prefix(condition, batch)
    full = jax.jit(model.apply)({"params": params}, codes, prefix, mask)                # [4, 4, N]
    variables = {"params": params}
    cache = jax.jit(lambda v, p, m: model.apply(v, 4, p, m, method=Transformer.prefill))(  # noqa: B023
        variables, prefix, mask)
    pm = jnp.ones((4, model.prefix_len), bool) if mask is None else mask
    key_valid = jnp.concatenate([pm, jnp.ones((4, model.seq_len), bool)], axis=1)
    step = jax.jit(lambda prev, i, cache: model.apply(variables, prev, i, cache, key_valid,  # noqa: B023
                                                      method=Transformer.decode))
    previous = jnp.zeros((4,), jnp.int32)
    for i in range(model.seq_len):
      logits, cache = step(previous, i, cache)
      np.testing.assert_allclose(logits, full[:, i], rtol=1e-5, atol=1e-5, err_msg=condition)
      previous = codes[:, i]
    # both samplers in one program
    draws = jax.jit(lambda key: [sample_tokens(model, params, key, 4, prefix, mask, sampler=s)  # noqa: B023
                                 for s in ("cached", "uncached")])(jax.random.PRNGKey(7))
    np.testing.assert_array_equal(draws[0], draws[1])


def test_caption_samples_are_the_decoded_codes_of_the_cached_sampler():
  """The family's caption-conditional sample: the cached sampler's codes for the caption, decoded
  by the stage-1 decoder with the pixel key; equal to the uncached family's images."""
  family, params, config = _prior("caption")
  uncached, _, _ = _prior("caption", sampler="uncached")
  batch = _batch(4)
  x = family.sample(params, jax.random.PRNGKey(3), 4, batch["caption"])
  assert x.shape == (4, 4, 4, 1) and x.dtype == jnp.uint8 and int(x.max()) < SPEC.num_bins
  np.testing.assert_array_equal(x, uncached.sample(params, jax.random.PRNGKey(3), 4, batch["caption"]))
  _, rng_codes, rng_pixels = jax.random.split(jax.random.PRNGKey(3), 3)
  codes = jax.jit(lambda r, c: sample_tokens(_transformer(config), params, r, 4, c, c != 0))(rng_codes, batch["caption"])
  ae = _autoencoder()
  np.testing.assert_array_equal(x, ae.functions["decode"](ae.params, codes.reshape(4, *GRID), rng_pixels))


def test_samples_follow_the_decode_option():
  """sample.decode='mode' gives the stage-1 decoder's most probable pixels of the sampled codes,
  a function of the codes alone: the same key, the same images, whatever the pixel key."""
  family, params, _ = _prior(decode="mode")
  a = family.sample(params, jax.random.PRNGKey(0), 6)
  b = family.sample(params, jax.random.PRNGKey(0), 6)
  np.testing.assert_array_equal(a, b)
  with pytest.raises(GenfamError, match="sample.decode"):
    _prior(decode="mean")


def test_temperature_scales_the_code_logits():
  """sample.temperature T draws each code from softmax(logits / T) (the trade-off curves' knob): near
  T = 0 the codes are the greedy ones whatever the key, so with decode='mode' every key gives the
  same images, the stage-1 decoder's mode of the greedy codes; T = 1 (the default) samples as trained."""
  family, params, config = _prior(decode="mode", temperature=1e-4)
  a, b = family.sample(params, jax.random.PRNGKey(1), 3), family.sample(params, jax.random.PRNGKey(2), 3)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a[0], a[1])
  model = _transformer(config)
  codes = np.zeros((1, GRID[0] * GRID[1]), np.int32)
  for i in range(codes.shape[1]):     # greedy decoding by full forward passes
    logits = jax.jit(lambda c: model.apply({"params": params}, c, None, None))(jnp.asarray(codes))
    codes[0, i] = int(jnp.argmax(logits[0, i]))
  ae = _autoencoder()
  np.testing.assert_array_equal(a[0], ae.functions["decode"](ae.params, codes.reshape(1, *GRID),
                                                             jax.random.PRNGKey(0), "mode")[0])
  assert load_config("code_prior").sample.temperature == 1.0


def test_bad_input_is_one_line():
  c = load_config("code_prior")
  with pytest.raises(GenfamError, match="autoencoder_workdir"):
    registry.make_family(c, SPEC)                                        # no stage 1 handed over
  with pytest.raises(GenfamError, match="vqvae"):
    frozen.family_inputs(c, SPEC)                                        # model.autoencoder_workdir=''
  ae = _autoencoder()
  other = DatasetSpec(name="other", image_shape=(4, 4, 1), num_bins=5, class_names=("a",))
  with pytest.raises(GenfamError, match="trained on 'toy'"):
    code_prior.make(c, other, autoencoder=ae)
  with pytest.raises(GenfamError, match="exports no"):
    code_prior.make(c, SPEC, autoencoder=ae._replace(functions={"encode": ae.functions["encode"]}))
  family, params, _ = _prior("label")
  with pytest.raises(GenfamError, match="condition of shape"):
    family.sample(params, jax.random.PRNGKey(0), 3, np.zeros((2,), np.int32))


# ---------------------------------------------------------------------------------------------
# End to end through the loop (slow): stage 1, then stage 2 on its workdir.
# ---------------------------------------------------------------------------------------------


def _train(name, variant, workdir, **model):
  config = load_config(name, variant)
  config.train.progress = False
  for k, v in model.items():
    config.model[k] = v
  return config, train.train_and_evaluate(config, str(workdir))


@pytest.fixture(scope="module")
def stage_one_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vqvae")
  _train("vqvae", "smoke", workdir)
  return str(workdir)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["smoke", "label_smoke", "caption_smoke"])
def test_smoke_trains_on_a_stage_one_workdir_evaluates_and_samples(variant, stage_one_workdir, tmp_path):
  config, summary = _train("code_prior", variant, tmp_path / "prior", autoencoder_workdir=stage_one_workdir)
  report = summary["test"]["elbo"]
  assert report["num_examples"] == config.eval.num_examples
  np.testing.assert_allclose(report["decoder_bpd"] + report["prior_bpd"], report["bpd"], rtol=1e-5)
  assert (report.get("conditional_on") or "") == {"smoke": "", "label_smoke": "label", "caption_smoke": "caption"}[variant]
  assert os.path.getsize(tmp_path / "prior" / "samples.png") > 0
  evaluated = train.evaluate_workdir(config, str(tmp_path / "prior"))
  np.testing.assert_allclose(evaluated["test"]["elbo"]["bpd"], report["bpd"], rtol=1e-6)
  grid = train.sample_workdir(config, str(tmp_path / "prior"), "again.png")
  assert os.path.getsize(grid) > 0


@pytest.mark.slow
def test_caption_sampling_through_the_cli_and_a_wrong_workdir(stage_one_workdir, tmp_path):
  """--mode=sample --caption=... through genfam.main on a trained caption prior; a prior that names a
  workdir of another family is refused in one line naming the command that trains stage 1."""
  workdir = str(tmp_path / "prior")
  _train("code_prior", "caption_smoke", workdir, autoencoder_workdir=stage_one_workdir)
  base = [sys.executable, "-m", "genfam.main", "--config=configs/code_prior.py:caption_smoke",
          f"--config.model.autoencoder_workdir={stage_one_workdir}", f"--workdir={workdir}"]
  out = subprocess.run(base + ["--mode=sample", "--caption=a small dark digit", "--out=caption.png"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "caption:" in out.stdout and os.path.getsize(os.path.join(workdir, "caption.png")) > 0
  wrong = [a if not a.startswith("--config.model.autoencoder") else f"--config.model.autoencoder_workdir={workdir}"
           for a in base]
  out = subprocess.run(wrong + ["--mode=eval"], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode != 0 and "configs/vqvae.py" in out.stderr, out.stderr[-2000:]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"]["autoencoder_workdir"] == stage_one_workdir


@pytest.mark.slow
def test_sampling_speed_script_runs_tiny(tmp_path):
  """experiments/benchmarks/two_stage_sampling_speed.py on the smoke configs: both models sample, in one process,
  with their sequential steps counted (a 4x4 code grid against 64 pixels); no timing is asserted."""
  from experiments.benchmarks import two_stage_sampling_speed
  out = tmp_path / "speed.json"
  result = two_stage_sampling_speed.main(["--smoke", "--num=2", "--repeats=1", f"--out={out}"])
  with open(out) as f:
    assert json.load(f) == json.loads(json.dumps(result))
  steps = {r["model"]: r["sequential_steps"] for r in result["rows"]}
  assert steps == {"code_prior": 16, "igpt": 64} and result["step_ratio"] == 4
  assert all(r["images_per_s"] > 0 and r["num"] == 2 for r in result["rows"])
