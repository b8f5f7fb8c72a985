"""The one explicit registry of families: name -> module with `make`.

Each module exposes `make(config, spec: DatasetSpec, **inputs) -> genfam.family.Family`;
`inputs` are what the family takes from other runs, restored by the loop
(`genfam.loop.frozen.family_inputs`: a caption model's frozen text encoder `encode_text`),
so that a family reads no checkpoint itself. Adding a family means one module, one line
here, and one config.
"""
import importlib

from genfam.errors import GenfamError
from genfam.family import LIKELIHOOD_CONDITIONS, Family, check_likelihood_kind

_FAMILIES: dict[str, str] = {}


def register(name: str, module: str) -> None:
  if name in _FAMILIES:
    raise ValueError(f"family {name!r} registered twice ({_FAMILIES[name]} and {module})")
  _FAMILIES[name] = module


register("independent", "genfam.families.independent")
register("flow", "genfam.families.flow")
register("vae", "genfam.families.vae")
register("diffusion", "genfam.families.diffusion")
register("vdm", "genfam.families.vdm")
register("classifier", "genfam.families.auxiliary.classifier")
register("clip", "genfam.families.auxiliary.clip")
register("style_encoder", "genfam.families.auxiliary.style_encoder")
register("igpt", "genfam.families.igpt")
register("gan", "genfam.families.gan")
register("aligndraw", "genfam.families.aligndraw")
register("vqvae", "genfam.families.two_stage.discrete_autoencoder")
register("code_prior", "genfam.families.two_stage.code_prior")
register("latent_autoencoder", "genfam.families.two_stage.latent_autoencoder")
register("latent_diffusion", "genfam.families.two_stage.latent_diffusion")


def names() -> tuple[str, ...]:
  return tuple(sorted(_FAMILIES))


def make_family(config, spec, **inputs) -> Family:
  """Builds the family named by `config.family` for dataset `spec`, handing its `make` the
  `inputs` restored from other runs (none for most families: `genfam.loop.frozen.make_family`
  restores what a config names)."""
  name = config.family
  if name not in _FAMILIES:
    raise GenfamError(f"unknown family {name!r} in config.family; known families: {', '.join(names())}")
  family = importlib.import_module(_FAMILIES[name]).make(config, spec, **inputs)
  if family.log_likelihood is None and family.test_metrics is None:
    raise ValueError(f"family {name!r} reports nothing: give it a log_likelihood, test_metrics, or both")
  if family.log_likelihood is not None:
    for kind in (family.likelihood_kind, *(family.extra_likelihoods or {})):
      check_likelihood_kind(kind)
  if family.test_metrics is not None and not family.headline_metric:
    raise ValueError(f"family {name!r} has test_metrics but no headline_metric: name the metric it leads with")
  if family.likelihood_condition not in LIKELIHOOD_CONDITIONS:
    raise ValueError(f"family {name!r} conditions its likelihood on {family.likelihood_condition!r}; "
                     f"use one of {LIKELIHOOD_CONDITIONS}")
  return family
