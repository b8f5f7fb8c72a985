"""The diffusion family's bound function (random weights on digits-shaped batches) and its
sampler options: the parts add up to 'bpd', the label term is log(C) / (D log 2), the parts are
the terms of `bound.exact_vlb`, and DDIM's eta is range-checked."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genfam.data.spec import DatasetSpec
from genfam.diffusion import bound
from genfam.errors import GenfamError
from genfam.families import diffusion as family_module
from genfam.likelihood.bits import nats_to_bpd
from tests.conftest import load_config, resume_under

SPEC = DatasetSpec("digits", (8, 8, 1), 17, tuple(str(i) for i in range(10)), 1437, 360)


def _config(**diffusion):
  c = load_config("ddpm")   # smoke: T = 20, vlb_chunk = 5, sampled_t = 4, class-conditional
  for key, value in diffusion.items():
    c.diffusion[key] = value
  return c


def _batch(n=2, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 17, (n, 8, 8, 1)).astype(np.uint8),
          "label": rng.integers(0, 10, (n,)).astype(np.int32)}


def _random_params(family, seed=1, scale=0.3):
  """Random weights in the shapes init makes, without compiling it (the U-Net's zero-initialised
  output layer would make eps = 0 and hide the label)."""
  shapes = jax.eval_shape(lambda: family.eval_params(family.init(jax.random.PRNGKey(0), _batch())))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), shapes)


def test_bound_parts_label_term_and_extra_kind(monkeypatch):
  batch, key = _batch(), jax.random.PRNGKey(3)
  with_label = family_module.make(_config(bound_condition="label"), SPEC)
  null = family_module.make(_config(bound_condition="null"), SPEC)
  assert with_label.likelihood_kind == null.likelihood_kind == "vlb"
  assert set(with_label.extra_likelihoods) == {"vlb-sampled-4t"}
  assert family_module.make(_config(sampled_t=0), SPEC).extra_likelihoods is None
  params = _random_params(with_label)

  got = jax.jit(with_label.log_likelihood)(params, batch, key)
  assert set(got) == {"bpd", "prior_bpd", "diffusion_bpd", "decoder_bpd", "label_bpd"}
  np.testing.assert_allclose(got["label_bpd"], math.log(10) / (64 * math.log(2)), rtol=1e-6)

  # Null label, run eagerly with exact_vlb's output recorded (one compile, not two): the parts
  # are its terms, index 0 the decoder and 1..T-1 the diffusion KLs, with the config's options.
  calls, exact_vlb = [], bound.exact_vlb

  def recording_exact_vlb(*args, **kwargs):
    calls.append((kwargs, exact_vlb(*args, **kwargs)))
    return calls[-1][1]

  monkeypatch.setattr(bound, "exact_vlb", recording_exact_vlb)
  got_null = null.log_likelihood(params, batch, key)
  assert set(got_null) == {"bpd", "prior_bpd", "diffusion_bpd", "decoder_bpd"}
  (kwargs, parts), = calls
  c = _config().diffusion
  assert kwargs == {"chunk": c.vlb_chunk, "clip_x0": c.clip_denoised}
  assert parts["terms"].shape == (c.num_steps, 2)
  np.testing.assert_allclose(got_null["prior_bpd"], nats_to_bpd(parts["prior"], 64), rtol=1e-6)
  np.testing.assert_allclose(got_null["decoder_bpd"], nats_to_bpd(parts["terms"][0], 64), rtol=1e-6)
  np.testing.assert_allclose(got_null["diffusion_bpd"], nats_to_bpd(parts["terms"][1:].sum(0), 64), rtol=1e-6)

  for out in (got, got_null):
    for value in out.values():
      assert value.shape == (2,) and bool(jnp.all(jnp.isfinite(value)))
    np.testing.assert_allclose(out["bpd"], sum(v for k, v in out.items() if k != "bpd"), rtol=1e-6)
  np.testing.assert_allclose(got["prior_bpd"], got_null["prior_bpd"], rtol=1e-6)   # no network in it
  assert not np.allclose(got["diffusion_bpd"], got_null["diffusion_bpd"])          # the label is used


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_ddim_eta_outside_unit_interval_is_a_one_line_error(eta):
  c = _config()
  with pytest.raises(GenfamError, match=r"sample\.eta.*\[0, 1\]") as error:
    family_module.make_sampler(c, SPEC, eta=eta)
  assert "\n" not in str(error.value)
  c.sample.eta = eta
  with pytest.raises(GenfamError, match=r"sample\.eta"):
    family_module.make(c, SPEC)


def test_ddim_runs_at_both_eta_bounds():
  """eta = 0 and eta = 1 both run to images; from the same x_T (same key) they differ, since
  eta = 1 adds fresh noise at every step and eta = 0 none."""
  family = family_module.make(_config(), SPEC)
  params = family.eval_params(family.init(jax.random.PRNGKey(0), _batch()))
  samples = {}
  for eta in (0.0, 1.0):
    draw = family_module.make_sampler(_config(), SPEC, sampler="ddim", eta=eta)
    samples[eta] = np.asarray(draw(params, jax.random.PRNGKey(1), 3, None))
    assert samples[eta].shape == (3, *SPEC.image_shape) and samples[eta].dtype == np.uint8
    assert samples[eta].max() < SPEC.num_bins
    np.testing.assert_array_equal(np.asarray(draw(params, jax.random.PRNGKey(1), 3, None)), samples[eta])
  assert (samples[0.0] != samples[1.0]).any()


def test_learned_variance_family_options():
  """A learned variance doubles the U-Net's outputs and feeds the bound; bad combinations are one-line errors."""
  learned = family_module.make(_config(variance="learned", loss="hybrid", t_sampling="importance"), SPEC)
  state = jax.eval_shape(lambda: learned.init(jax.random.PRNGKey(0), _batch()))
  out_kernels = [leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)
                 if "kernel" in jax.tree_util.keystr(path)]
  assert (3, 3, 8, 2) in out_kernels                               # output conv: eps and r for 1 channel
  assert state.model_state["loss_history"]["values"].shape == (20, 10)
  for options, match in [(dict(variance="learned", loss="simple"), "no gradient"),
                         (dict(loss="hybrid"), "variance=learned"),
                         (dict(loss="l1"), "diffusion.loss"),
                         (dict(t_sampling="importance"), "t_sampling"),
                         (dict(variance="learned", loss="vlb", t_sampling="sometimes"), "t_sampling")]:
    with pytest.raises(GenfamError, match=match) as error:
      family_module.make(_config(**options), SPEC)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_a_run_evaluates_and_resumes_under_another_vlb_chunk(tmp_path):
  """diffusion.vlb_chunk only changes how many timesteps each network call of the bound takes
  (the values do not depend on it: test_diffusion_bound), so a workdir made under one chunk
  resumes under another without --allow_config_change, and the change is recorded."""
  changes = resume_under(_config(vlb_chunk=5), str(tmp_path), "diffusion.vlb_chunk", 2)
  assert changes["diffusion.vlb_chunk"] == [5, 2]
