"""The family contract: what every model trained by the loop gives it.

A family is built once from its config by `make(config) -> Family` (see
`genfam.registry`); everything it returns is a pure function of pytrees, so
the loop can jit, shard, checkpoint and average it without knowing the model.
A family never touches devices, checkpoints or files.

Generative families report a test log-likelihood (`log_likelihood`, bits/dim).
The models the evaluation needs but that are not generative (the domain
classifier, the contrastive text and image encoders) train through the same
loop and report their own test metrics (`test_metrics`: accuracy, recall) in
the same place; they have no likelihood (`log_likelihood=None`) and no sampler
(`sample=None`: the loop draws no sample grid). Either kind may offer pure
functions of its parameters to other models (`exports`, restored by
`genfam.loop.frozen.load_frozen`).

Batches are dicts of arrays:
  image      uint8 [B, H, W, C]   values in {0 .. num_bins-1}
  label      int32 [B]
  caption    int32 [B, L]         token ids, right-padded with 0
  attributes int32 [B, A]         the value index of each measured attribute
"""
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = Mapping[str, jax.Array]

# The kinds of log-likelihood a family may report (docs/DESIGN.md, "Likelihood conventions").
LIKELIHOOD_KINDS = ("exact", "elbo", "vlb", "ais")  # plus "iwae-<k>", "vlb-sampled-<k>t", "vlb-is-<k>t",
                                                    # "vlb-continuous-<k>t", "lsgm-<k>t"
_SAMPLED_T_KINDS = ("vlb-sampled-", "vlb-is-", "vlb-continuous-", "lsgm-")


def check_likelihood_kind(kind: str) -> str:
  """`kind` if it names a likelihood of docs/DESIGN.md: exact, elbo, vlb, ais, the
  importance-weighted bound 'iwae-<k>', 'vlb-sampled-<k>t' (an unbiased
  estimate of the vlb from k sampled timesteps per example), 'vlb-is-<k>t' (an
  unbiased importance-sampled estimate of the vlb from k timesteps per example) or
  'vlb-continuous-<k>t' (an unbiased estimate, from k sampled t per example, of
  the continuous-time bound of a variational diffusion model) or 'lsgm-<k>t' (a latent
  diffusion model's bound: decoder + negative encoder entropy + the diffusion prior's
  continuous-time bound on the latent density, estimated with one latent draw and k t)."""
  if kind in LIKELIHOOD_KINDS or (kind.startswith("iwae-") and kind[5:].isdigit()) or any(
      kind.startswith(p) and kind.endswith("t") and kind[len(p):-1].isdigit() for p in _SAMPLED_T_KINDS):
    return kind
  raise ValueError(f"unknown likelihood kind {kind!r}; use one of {LIKELIHOOD_KINDS}, 'iwae-<k>', "
                   f"'vlb-sampled-<k>t', 'vlb-is-<k>t', 'vlb-continuous-<k>t' or 'lsgm-<k>t'")


class Family(NamedTuple):
  """The small set of pure functions every family exposes.

  A family has `log_likelihood`, `test_metrics`, or both; the evaluation
  reports each it has (`genfam.evaluation.evaluate.evaluate_family`).

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
      number, lower is better), other keys are its labelled parts. None for a
      model that is not generative.
  likelihood_kind: str
      What 'bpd' is: 'exact', 'elbo', 'iwae-<k>', 'vlb' or 'ais' ('' without
      a log_likelihood).
  sample(params, rng, num, condition=None) -> uint8 [num, H, W, C]
      Samples; `condition` is int32 labels [num] (or caption tokens) for
      families that support conditioning, else ignored. Sampling options
      (temperature, sampler, steps, guidance) come from the family's config.
      None for a model that draws no samples: the loop then draws no grid and
      --mode=sample refuses it.
  extra_likelihoods: {kind: fn(params, batch, rng) -> {name: [B]}}
      Further bounds the evaluation reports beside the main one (e.g. a VAE's
      'iwae-1000' beside its 'elbo'); optional.
  likelihood_condition: str
      What every likelihood of the family is conditioned on: '' for none
      (-log p(x)), 'label' (-log p(x | label)) or 'caption' (-log p(x | caption)).
      Each report carries it as 'conditional_on' and the printed line says it,
      so a conditional number is never compared silently with an unconditional
      one. (A label mixture such as DDPM's sum_y p(x | y) / C is unconditional.)
  sample_condition: str or None
      What `sample` conditions on: '' (nothing: its samples are unconditional,
      and the loop refuses a condition rather than ignore it), 'label' (int32
      labels [num]) or 'caption' (caption tokens [num, L]; such a model may also
      take labels, as class prompts). None (the default): the same as
      likelihood_condition. It differs where the likelihood is a label mixture,
      sum_y p(x | y) / C: unconditional, while the samples are drawn by label.
      `sample_condition(family)` reads it.
  likelihood_note: str
      What a reader must know to compare the number, carried in every
      likelihood report as 'note' and printed with it; e.g. a flow's: exact for
      the dequantized density, an upper bound on the discrete NLL.
  test_metrics(params, batch, rng) -> {name: [B] float}
      Per-example test metrics of a model (1.0 / 0.0 for a hit / miss, or any
      per-example number); the evaluation averages them over the test split
      with standard errors, as it averages bits/dim, and reports them as one
      report of kind 'metrics'. An evaluation batch also carries 'mask' bool
      [B]: False on the rows that pad the last batch, whose values are dropped.
      Metrics that compare an example with others (retrieval recall@k) compare
      it within its evaluation batch, a gallery of eval.batch_size test
      examples; they must leave masked rows out of the gallery. A metric
      '<name>_chance' beside '<name>' is its chance level (per example, so a
      smaller last gallery is counted right), printed beside it. Optional.
  headline_metric: str
      The key of test_metrics the progress bar, the summary line and the
      results table lead with (higher is better); required with test_metrics.
  exports: {name: fn(params, ...) -> array}
      Pure functions of eval_params(state) the model offers to other models
      and evaluations: a classifier's penultimate 'features', the contrastive
      encoders' 'encode_text' / 'encode_image'. The loop never calls them;
      `genfam.loop.frozen.load_frozen` restores a trained workdir and returns them.
      Optional.
  """

  name: str
  init: Callable[[jax.Array, Batch], PyTree]
  update: Callable[[PyTree, Batch, jax.Array], tuple[PyTree, Metrics]]
  eval_params: Callable[[PyTree], PyTree]
  log_likelihood: Optional[Callable[[PyTree, Batch, jax.Array], Mapping[str, jax.Array]]]
  likelihood_kind: str
  sample: Optional[Callable[..., jax.Array]]
  extra_likelihoods: Optional[Mapping[str, Callable[..., Mapping[str, jax.Array]]]] = None
  likelihood_condition: str = ""
  likelihood_note: str = ""
  test_metrics: Optional[Callable[[PyTree, Batch, jax.Array], Mapping[str, jax.Array]]] = None
  headline_metric: str = ""
  exports: Optional[Mapping[str, Callable[..., Any]]] = None
  sample_condition: Optional[str] = None


def sample_condition(family: Family) -> str:
  """What the family's samples are conditioned on: '', 'label' or 'caption' (`Family.sample_condition`)."""
  return family.likelihood_condition if family.sample_condition is None else family.sample_condition


LIKELIHOOD_CONDITIONS = ("", "label", "caption")

# The report kind of a family's test_metrics, beside its likelihood kinds.
METRICS_KIND = "metrics"
