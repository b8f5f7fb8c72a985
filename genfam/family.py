"""The family contract: what every generative family gives the loop.

A family is built once from its config by `make(config) -> Family` (see
`genfam.registry`); everything it returns is a pure function of pytrees, so
the loop can jit, shard, checkpoint and average it without knowing the model.
A family never touches devices, checkpoints or files.

Batches are dicts of arrays:
  image   uint8 [B, H, W, C]   values in {0 .. num_bins-1}
  label   int32 [B]
  (caption int32 [B, L] once the data carries captions)
"""
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = Mapping[str, jax.Array]

# The kinds of log-likelihood a family may report (DESIGN.md).
LIKELIHOOD_KINDS = ("exact", "elbo", "vlb", "ais")  # plus "iwae-<k>" and "vlb-sampled-<k>t"


def check_likelihood_kind(kind: str) -> str:
  """`kind` if it names a likelihood of DESIGN.md: exact, elbo, vlb, ais, the
  importance-weighted bound 'iwae-<k>', or 'vlb-sampled-<k>t' (an unbiased
  estimate of the vlb from k sampled timesteps per example)."""
  if kind in LIKELIHOOD_KINDS or (kind.startswith("iwae-") and kind[5:].isdigit()) or (
      kind.startswith("vlb-sampled-") and kind.endswith("t") and kind[12:-1].isdigit()):
    return kind
  raise ValueError(f"unknown likelihood kind {kind!r}; use one of {LIKELIHOOD_KINDS}, 'iwae-<k>' "
                   f"or 'vlb-sampled-<k>t'")


class Family(NamedTuple):
  """The small set of pure functions every family exposes.

  init(rng, batch) -> state
      The train state pytree: params, optimizer state(s), model state, EMA.
  update(state, batch, rng) -> (state, metrics)
      One optimisation step; metrics is a flat dict of scalars (or 1-D arrays,
      logged as lists and histograms) and must hold 'loss'. A metric named
      'alert_<name>' > 0 is reported by the loop as a warning. The loop jits
      it, shards the batch over devices, donates state and skips the step if
      the loss or the new state is not finite.
  eval_params(state) -> params
      The parameters evaluation and sampling use (EMA weights where kept).
  log_likelihood(params, batch, rng) -> {name: [B] float bits/dim}
      Per-example parts in bits/dim; key 'bpd' is the total (the reported
      number, lower is better), other keys are its labelled parts.
  likelihood_kind: str
      What 'bpd' is: 'exact', 'elbo', 'iwae-<k>', 'vlb' or 'ais'.
  sample(params, rng, num, condition=None) -> uint8 [num, H, W, C]
      Samples; `condition` is int32 labels [num] (or caption tokens) for
      families that support conditioning, else ignored. Sampling options
      (temperature, sampler, steps, guidance) come from the family's config.
  extra_likelihoods: {kind: fn(params, batch, rng) -> {name: [B]}}
      Further bounds the evaluation reports beside the main one (e.g. a VAE's
      'iwae-1000' beside its 'elbo'); optional.
  """

  name: str
  init: Callable[[jax.Array, Batch], PyTree]
  update: Callable[[PyTree, Batch, jax.Array], tuple[PyTree, Metrics]]
  eval_params: Callable[[PyTree], PyTree]
  log_likelihood: Callable[[PyTree, Batch, jax.Array], Mapping[str, jax.Array]]
  likelihood_kind: str
  sample: Callable[..., jax.Array]
  extra_likelihoods: Optional[Mapping[str, Callable[..., Mapping[str, jax.Array]]]] = None
