"""The code prior family ('code_prior'): stage 2 of DALL-E's two-stage recipe (docs/two_stage.md).

A decoder-only transformer (the image-GPT's: `genfam.nets.transformer.Transformer`, its
label / caption prefix and key-value-cached sampler, through `genfam.families.igpt`) over
the h x w code grid z = e(x) in {0..N-1}^(h x w) of a frozen stage-1 autoencoder (a
configs/vqvae.py run), in raster order:
  p(z | prefix) = prod_{i < h w} Cat(z_i; softmax(logits_i(z_<i, prefix))),
prefix as the image-GPT's (model.condition 'none' | 'label' | 'caption', caption dropout).
The loop restores the stage-1 run (model.autoencoder_workdir, trained by
configs/<model.autoencoder_config>.py on the same dataset; genfam/loop/frozen.py) and hands
it to `make` as `autoencoder` (a `Frozen`): its exports encode images to codes and give the
decoder's -log2 p(x | z) / D and its draws; its parameters are never trained here.

Likelihood (kind 'elbo', an upper bound on -log2 p(x [| prefix]) / D, bits per stored pixel).
With a deterministic encoder z* = e(x) and the model p(x) = sum_z p(z) p(x | z),
  p(x) >= p(z*) p(x | z*)   so   -log2 p(x) <= -log2 p(x | z*) + (-log2 p(z*)),
which is the ELBO with the point-mass posterior q(z | x) = [z = z*] (entropy 0). Both
terms are computed exactly (no sampling): 'decoder_bpd' = -log2 p(x | z*) / D from the
stage-1 decoder, 'prior_bpd' = -log2 p(z* | prefix) / D from this transformer; 'bpd' their
sum. Conditional models bound -log2 p(x | label) or -log2 p(x | caption)
(`likelihood_condition`), the decoder being unconditional. Training minimises 'prior_bpd'
(the only term that depends on this model's parameters).

Sampling: codes from the cached (or uncached) sampler with the prefix (labels [num],
caption tokens [num, L], or None as the image-GPT samples), then the stage-1 decoder maps
them to images: a draw from p(x | z) (sample.decode='sample', a true sample of the
two-stage model) or each pixel's most probable bin ('mode'). h w sequential transformer
calls per image (49 for a 7x7 grid) against the pixel image-GPT's D (784).
"""
import jax
import jax.numpy as jnp

from genfam import optim
from genfam.errors import GenfamError
from genfam.families import igpt
from genfam.family import Family
from genfam.likelihood import bits
from genfam.nets.transformer import sample_tokens

EXPORTS = ("encode", "decoder_nll_bits", "decode")
DECODES = ("sample", "mode")


def stage_one(autoencoder, spec, workdir: str = ""):
  """(encode, decoder_nll_bits, decode, params, (h, w), N) of the frozen stage-1 model, checked."""
  if autoencoder is None:
    raise GenfamError("the code prior needs its frozen stage-1 autoencoder: train one with "
                      "`python -m genfam.main --config=configs/vqvae.py --workdir=DIR` and pass "
                      "--config.model.autoencoder_workdir=DIR")
  missing = [name for name in EXPORTS if name not in autoencoder.functions]
  if missing:
    raise GenfamError(f"the stage-1 model of {workdir or 'model.autoencoder_workdir'} (family "
                      f"{autoencoder.config.get('family')!r}) exports no {', '.join(missing)}: name a workdir "
                      "trained with configs/vqvae.py")
  if tuple(autoencoder.spec.image_shape) != tuple(spec.image_shape) or autoencoder.spec.name != spec.name:
    raise GenfamError(f"the stage-1 model of {workdir!r} was trained on {autoencoder.spec.name!r} "
                      f"{tuple(autoencoder.spec.image_shape)}, not {spec.name!r} {tuple(spec.image_shape)}: "
                      "train stage 1 on this dataset")
  f, params = autoencoder.functions, autoencoder.params
  images = jax.ShapeDtypeStruct((1, *spec.image_shape), jnp.uint8)
  grid = jax.eval_shape(lambda x: f["encode"](params, x), images).shape[1:]        # (h, w)
  return f["encode"], f["decoder_nll_bits"], f["decode"], params, tuple(grid), int(
      autoencoder.config.model.codebook_size)


def make(config, spec, autoencoder=None) -> Family:
  """The code-prior Family for dataset `spec` over the codes of the frozen `autoencoder`."""
  workdir = config.model.get("autoencoder_workdir", "")
  encode, decoder_nll_bits, decode, ae_params, (h, w), num_codes = stage_one(autoencoder, spec, workdir)
  model = igpt.make_model(config, spec, num_tokens=num_codes, seq_len=h * w)
  prefix_kind = igpt.condition_of(config.model)
  caption_dropout = float(config.model.get("caption_dropout", 0.0))
  temperature, top_k, sampler = igpt.sampling_options(config.sample, num_codes)
  how = config.sample.decode
  if how not in DECODES:
    raise GenfamError(f"unknown config.sample.decode {how!r}; use one of {DECODES}")
  tx = optim.optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  num_dims = spec.num_dims

  def codes_of(batch):  # image uint8 [B, H, W, C] -> int32 [B, h w], raster order
    codes = jax.lax.stop_gradient(encode(ae_params, batch["image"]))
    return codes.reshape(codes.shape[0], -1).astype(jnp.int32)

  def init(rng, batch):
    codes = codes_of({"image": batch["image"][:1]})
    prefix, prefix_mask = igpt.prefix_of(prefix_kind, {k: v[:1] for k, v in batch.items()})
    params = jax.jit(lambda r: model.init({"params": r}, codes, prefix, prefix_mask))(rng)["params"]
    return optim.scalar_loss_family_state(params, tx, ema_decay)

  def log_likelihood(params, batch, rng):
    """{'bpd', 'decoder_bpd', 'prior_bpd'} each [B]: the two-stage bound and its terms."""
    del rng
    codes = codes_of(batch)
    prefix, prefix_mask = igpt.prefix_of(prefix_kind, batch)
    prior = bits.nats_to_bpd(igpt.token_nll(model, params, codes, prefix, prefix_mask), num_dims)
    decoder = decoder_nll_bits(ae_params, batch["image"], codes.reshape(-1, h, w))
    return {"bpd": decoder + prior, "decoder_bpd": decoder, "prior_bpd": prior}

  def loss_fn(params, model_state, batch, rng):
    rng_drop, rng_caption = jax.random.split(rng)
    prefix, prefix_mask = igpt.training_prefix(prefix_kind, batch, caption_dropout, rng_caption)
    nats = igpt.token_nll(model, params, codes_of(batch), prefix, prefix_mask, train=True, rng=rng_drop)
    prior_bpd = bits.nats_to_bpd(nats, num_dims).mean()
    return prior_bpd, ({"prior_bpd": prior_bpd, "bits_per_code": prior_bpd * num_dims / (h * w)}, model_state)

  def _draw(params, rng, num, condition_value):
    rng_label, rng_codes, rng_pixels = jax.random.split(rng, 3)
    prefix, prefix_mask = igpt.sampling_prefix(prefix_kind, spec.num_classes, model.prefix_len, rng_label, num,
                                               condition_value)
    codes = sample_tokens(model, params, rng_codes, num, prefix, prefix_mask,
                          temperature=temperature, top_k=top_k, sampler=sampler)          # [num, h w]
    return decode(ae_params, codes.reshape(num, h, w), rng_pixels, how)

  draw_jit = jax.jit(_draw, static_argnums=2)

  def sample(params, rng, num, condition=None):
    """uint8 [num, H, W, C] in {0 .. K-1}; condition: labels [num], captions [num, L] or None."""
    condition = igpt.checked_condition(prefix_kind, model.prefix_len, num, condition, "the code prior")
    return draw_jit(params, rng, int(num), condition)

  note = (f"upper bound: -log2 p(x | z*) of the frozen stage-1 decoder plus the exact -log2 p(z*) of the "
          f"code prior, z* = e(x) the deterministic {h}x{w} code of {num_codes} (p(x) >= p(z*) p(x | z*)); "
          f"stage 1 = {workdir or 'the given autoencoder'} at step {autoencoder.step}")
  return Family(name="code_prior", init=init, update=optim.make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=optim.eval_params, log_likelihood=log_likelihood, likelihood_kind="elbo",
                sample=sample, likelihood_condition="" if prefix_kind == "none" else prefix_kind,
                likelihood_note=note)

