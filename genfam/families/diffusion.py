"""The diffusion family: a DDPM trained on L_simple (or improved DDPM's hybrid loss),
judged by its full bound.

Training (Ho et al.): t ~ U{1..T}, eps ~ N(0, I), x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps,
  L_simple = mean ||eps - eps_theta(x_t, t, y)||^2   (per pixel; the 'loss' metric).
x_0 is the image's bin centre on [-1, 1] (K bins: 256, or 17 for digits).

Learned variances (Nichol & Dhariwal; diffusion.variance='learned'): the U-Net
has 2C output channels, eps and r; v = (r + 1) / 2 (so a zero output is the
geometric mean of the endpoints) and Sigma_t = exp(v log beta_t + (1 - v) log beta-tilde_t).
diffusion.loss: 'simple', 'hybrid' (L_simple + lambda L_vlb with the stop-gradient
on the mean, lambda = diffusion.hybrid_lambda; needs the learned variance) or
'vlb'; diffusion.t_sampling='importance' draws t for it from the loss-squared
history kept in TrainState.model_state (`genfam.diffusion.losses`).

Evaluation: the variational bound of `genfam.diffusion.bound` with all T terms
(likelihood kind 'vlb'), per example in bits/dim = nats / (D log 2), with its
parts 'prior_bpd' (KL of x_T to N(0, I)), 'diffusion_bpd' (sum of the T - 1
Gaussian KLs), 'decoder_bpd' (the discretized-Gaussian L_0) and, for a class-
conditional model evaluated with the true label, 'label_bpd' = log(C) / (D log 2):
the model is then the mixture p(x) = sum_y p(x | y) / C, and
-log p(x) <= -log p(x | y) + log C, so the total stays a bound on an
unconditional likelihood comparable with the other families'. Optionally, the
extra kind 'vlb-sampled-<k>t' is the unbiased estimate from k sampled t.

Importance-sampled bound (eval.is_timesteps = k > 0): 'vlb-is-<k>t', an unbiased
importance-sampled estimate of the same full bound (`genfam.diffusion.importance`):
prior and L_0 exact, sum_{t>=1} L_t estimated from k stratified t per image drawn from
q(t) ~ sqrt(E[L_t^2]) (mixed with eval.is_uniform_share of uniform), E[L_t^2] measured
with the evaluated parameters on a pilot of eval.is_pilot_examples images that are not
test images (the validation split if data.validation_examples > 0, else the first
training images) at eval.is_pilot_timesteps grid timesteps. The pilot runs once per
evaluation report (`prepare`, called by `genfam.evaluation.evaluate.likelihood_report`;
called directly, the function runs it on every batch). Its report has the 'vlb' parts
(diffusion_bpd estimated) and 'timestep_variance', the mean over images of each image's
estimated variance of its sampled part in (bits/dim)^2 (`importance.timestep_variance`):
roughly the timestep sampling's share of bpd_stderr^2 * N.
An extra beside 'vlb' unless eval.is_main (configs/ddpm.py's default) makes it the main
likelihood: the full bound then runs as an extra on the first eval.extra_num_examples
images (0: all), and the estimate on those same images is reported beside it.

Caption condition (model.condition='caption', exclusive with model.class_conditional):
c = the FROZEN CLIP text encoder's pooled, unit-norm embedding of the caption
tokens [B, E] (`encode_text` of the configs/clip.py workdir model.text_encoder_workdir,
restored by the loop (`genfam.loop.frozen.family_inputs`) and handed to `make`; no gradient
reaches it); the U-Net adds its projection where the label embedding goes and
replaces it by a learned null embedding with probability model.p_uncond in
training (`genfam.nets.unet`). Trained on each batch's captions (their phrasing
changes with the epoch). Its bound (diffusion.bound_condition='caption') is
evaluated with each test image's own caption (epoch-0 phrasing), so it bounds
-log p(x | caption) and is labelled so (likelihood_condition 'caption'); there
is no analogue of the label mixture's + log C (captions are not a finite set of
known prior probability). bound_condition='null' bounds the unconditional
model, -log p(x) under the null embedding.

EMA parameters (TrainState.ema_params) are used for evaluation and sampling.
Sampling: DDPM ancestral (T steps) or DDIM (S steps, eta, spacing), with
classifier-free guidance weight w when labels or captions are given (w = 1:
conditional, w = 0: unconditional):
  eps = eps(x_t, t, null) + w (eps(x_t, t, c) - eps(x_t, t, null)).
Gradient guidance (sample.guidance_form, scale s = sample.guidance_scale; docs/guidance.md):
'classifier' adds s grad log p(y | x_t, t) of a noise-conditional classifier, 'clip' s grad of
a noise-conditional CLIP's logit s_clip <v(x_t, t), e(caption)> (labels read as 'a photo of a
<class>'), to the DDPM mean (times Sigma_t) or DDIM's eps (times -sqrt(1 - a_t))
(`genfam.diffusion.samplers`), on top of the classifier-free eps above for a conditional model
(an unconditional one uses its only eps). The guide is a plain function `guide(x_t, t, condition)
-> [B]` that the loop restores (`genfam.loop.frozen.guide`) and hands to `make`.
"""
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from genfam import optim
from genfam.diffusion import bound, importance, losses, process, samplers, schedules
from genfam.diffusion.process import q_sample
from genfam.errors import GenfamError
from genfam.family import Family
from genfam.likelihood.bits import nats_to_bpd
from genfam.likelihood.discretized import bin_centres
from genfam.nets.unet import UNet

BOUND_CONDITIONS = ("label", "caption", "null")
CONDITIONS = ("", "caption")   # model.condition: '' (labels if model.class_conditional, else none) or 'caption'


def make_net(model_config, spec, learned_variance: bool = False, condition_dim: int = 0) -> UNet:
  """The U-Net of `config.model` for dataset `spec` (2C outputs, eps and the variance's r,
  with learned_variance; a condition vector of condition_dim, the text embedding's width,
  for a caption model); checks the image shape."""
  m = model_config
  if m.get("condition", "") == "caption" and condition_dim <= 0:
    raise GenfamError("this family does not take model.condition='caption'; set --config.model.condition=''")
  height, width, channels = spec.image_shape
  factor = 2 ** (len(m.channel_mult) - 1)
  if height % factor or width % factor:
    g, halvings = math.gcd(height, width), 0
    while g % 2 == 0:
      g, halvings = g // 2, halvings + 1
    raise GenfamError(f"images of {height}x{width} do not halve {len(m.channel_mult) - 1} times; "
                      f"give model.channel_mult at most {halvings + 1} entries")
  num_classes = spec.num_classes if m.class_conditional else 0
  return UNet(out_channels=channels * (2 if learned_variance else 1), base_channels=m.base_channels,
              channel_mult=tuple(m.channel_mult), num_res_blocks=m.num_res_blocks,
              attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout, num_classes=num_classes,
              condition_dim=condition_dim if m.get("condition", "") == "caption" else 0,
              p_uncond=m.p_uncond, num_heads=m.num_heads, num_groups=m.num_groups, dtype=m.get("dtype", "float32"))


class Conditioning(NamedTuple):
  """What the U-Net is conditioned on, and how batches and sampling conditions become its input.

  kind:       '' (unconditional), 'label' or 'caption'.
  dim:        E, the text embedding's width (caption); 0 otherwise.
  of_batch(batch) -> labels int32 [B], embeddings float32 [B, E] or None (the null condition).
  for_sampling(condition) -> the net's condition for labels [num] or caption tokens [num, L]
              (a caption model turns label k into the caption 'a photo of a <class k>').
  null(num) -> the null condition: labels [num] = the null label, or None (null embedding).
  """
  kind: str
  dim: int
  of_batch: Callable
  for_sampling: Callable
  null: Callable


def make_conditioning(model_config, spec, encode_text: Optional[Callable] = None) -> Conditioning:
  """The family's Conditioning; for a caption model the text encoder is `encode_text`
  (tokens [B, L] -> [B, E]): the frozen encoder of model.text_encoder_workdir, which the
  loop restores (`genfam.loop.frozen.family_inputs`), or a stand-in (tests)."""
  m = model_config
  kind = m.get("condition", "")
  if kind not in CONDITIONS:
    raise GenfamError(f"unknown model.condition {kind!r}; use '' (labels through model.class_conditional, "
                      f"or none) or 'caption'")
  if kind == "caption" and m.class_conditional:
    raise GenfamError("model.condition='caption' and model.class_conditional=True are exclusive: set "
                      "--config.model.class_conditional=False (or use --config=configs/ddpm.py:caption)")
  if kind == "caption":
    if encode_text is None:
      raise GenfamError("model.condition='caption' needs the frozen text encoder of model.text_encoder_workdir: "
                        "build the family as the loop does (genfam.loop.frozen.make_family), which restores it")
    dim = int(jax.eval_shape(encode_text, jax.ShapeDtypeStruct((1, spec.caption_length), jnp.int32)).shape[-1])
    from genfam.families.auxiliary import clip
    class_prompts = jnp.asarray(clip.prompt_tokens(spec, [clip.prompt(spec, k) for k in range(spec.num_classes)]))

    def of_batch(batch):
      if "caption" not in batch:
        raise GenfamError("model.condition='caption' but batches carry no 'caption'; use a captioned dataset "
                          "or --config.model.condition=''")
      return encode_text(jnp.asarray(batch["caption"], jnp.int32))                 # [B, E]

    def for_sampling(condition):
      condition = jnp.asarray(condition, jnp.int32)
      tokens = class_prompts[condition] if condition.ndim == 1 else condition       # [num, L]
      return encode_text(tokens)                                                    # [num, E]

    return Conditioning("caption", dim, of_batch, for_sampling, lambda num: None)
  if m.class_conditional:
    null_label = spec.num_classes

    def labels(condition):
      condition = jnp.asarray(condition, jnp.int32)
      if condition.ndim != 1:
        raise GenfamError("caption tokens given to a label-conditioned diffusion model; pass int labels [num], "
                          "or train with --config=configs/ddpm.py:caption")
      return condition

    return Conditioning("label", 0, lambda batch: batch["label"], labels,
                        lambda num: jnp.full((num,), null_label, jnp.int32))
  return Conditioning("", 0, lambda batch: None, lambda condition: None, lambda num: None)


def _process(diffusion_config):
  d = diffusion_config
  if d.variance not in schedules.VARIANCES:
    raise GenfamError(f"unknown diffusion.variance {d.variance!r}; use one of {schedules.VARIANCES}")
  if d.schedule not in schedules.SCHEDULES:
    raise GenfamError(f"unknown diffusion.schedule {d.schedule!r}; use one of {schedules.SCHEDULES}")
  sched = schedules.make_schedule(d.schedule, d.num_steps)
  return sched, schedules.model_log_variance(sched, d.variance)


def _split_net_output(out, learned: bool):
  """U-Net output [B, H, W, C or 2C] -> eps, or (eps, v) with v = (r + 1) / 2."""
  if not learned:
    return out
  eps, r = jnp.split(out, 2, axis=-1)
  return eps, 0.5 * (r + 1.0)


def _eps_fn(net: UNet, params, learned: bool = False):
  """(x [B, H, W, C], t [B], condition: label [B], embedding [B, E] or None) -> eps [B, H, W, C]
  (or (eps, v)), evaluation mode."""
  return lambda x, t, condition=None: _split_net_output(net.apply({"params": params}, x, t, condition, False),
                                                        learned)


def guided_eps_fn(net: UNet, params, learned: bool, conditioning: Conditioning, num: int, condition,
                  weight: float):
  """The eps_fn(x, t) a sampler runs: classifier-free guidance with weight w on `condition`
  (labels [num] or caption tokens [num, L]), or the null condition's eps if condition is None
  or the net is unconditional."""
  eps_c = _eps_fn(net, params, learned)
  null = conditioning.null(num)
  if condition is None or not conditioning.kind:
    return lambda x, t: eps_c(x, t, null)
  return samplers.guided_eps_fn(eps_c, conditioning.for_sampling(condition), null, weight)


def _learned(diffusion_config) -> bool:
  return diffusion_config.variance == "learned"


GUIDANCE_FORMS = ("free", "classifier", "clip")
GUIDED_CONDITION = {"classifier": "label", "clip": "caption"}   # what each gradient form steers toward


def guidance_form_of(sample_config) -> str:
  """sample.guidance_form, checked ('free' when the config predates the key)."""
  form = sample_config.get("guidance_form", "free")
  if form not in GUIDANCE_FORMS:
    raise GenfamError(f"unknown sample.guidance_form {form!r}; use one of {GUIDANCE_FORMS}")
  return form


def gradient_guidance(form: str, scale: float, guide: Callable, conditioning: Conditioning, class_prompts,
                      condition):
  """The model's own condition and the `samplers.Guidance` of a gradient form for `condition`
  (labels [num] or caption tokens [num, L]): 'classifier' steers toward the labels, 'clip' toward
  the tokens (labels become the class prompts [C, L]); the model itself sees the labels (a label
  model), the tokens or labels (a caption model) or nothing."""
  if condition is None:
    fix = ("set --config.sample.conditional=True (labels 0..C-1)" if form == "classifier" else
           "pass --caption='a photo of a shirt' (or --config.sample.conditional=True for class prompts)")
    raise GenfamError(f"sample.guidance_form={form!r} steers toward a {GUIDED_CONDITION[form]} but none was "
                      f"given: {fix}")
  condition = jnp.asarray(condition, jnp.int32)
  if form == "classifier" and condition.ndim != 1:
    raise GenfamError("sample.guidance_form='classifier' steers toward labels, not a caption: drop --caption and "
                      "set --config.sample.conditional=True, or use --config.sample.guidance_form=clip")
  target = class_prompts[condition] if form == "clip" and condition.ndim == 1 else condition   # labels / tokens
  own = condition if conditioning.kind == "caption" or (conditioning.kind == "label" and condition.ndim == 1) \
      else None
  grad_fn = samplers.log_density_gradient(lambda x, t: guide(x, t, target))
  return own, samplers.Guidance(grad_fn, scale)


def make_sampler(config, spec, *, sampler: Optional[str] = None, steps: Optional[int] = None,
                 eta: Optional[float] = None, spacing: Optional[str] = None,
                 guidance: Optional[float] = None, conditioning: Optional[Conditioning] = None,
                 encode_text: Optional[Callable] = None, guidance_form: Optional[str] = None,
                 guidance_scale: Optional[float] = None, guide: Optional[Callable] = None):
  """A jitted pure `sample(params, rng, num, condition=None) -> uint8 [num, H, W, C]`.

  Options default to config.sample's; pass them to build several samplers
  (e.g. DDPM and DDIM at several S) from one config. condition: int [num]
  labels for a class-conditional model, caption tokens int32 [num, L] (or
  labels, read as 'a photo of a <class>') for a caption model, each guided
  with weight w; or None for unconditional samples (the null label or null
  embedding). `conditioning`: the family's (if not given, made from the config, a caption
  model's with `encode_text`, as `make` takes it). DDIM's eta must lie in [0, 1]
  (sigma_t = eta * the DDPM posterior std; checked for either sampler, so a
  bad config fails when the family is built). guidance_form / guidance_scale (default
  config.sample's): 'classifier' or 'clip' add the gradient of `guide(x_t, t, condition) -> [B]`
  (the loop's `genfam.loop.frozen.guide`) with scale s; such a sampler needs a condition.
  """
  c = config.sample
  sampler = c.sampler if sampler is None else sampler
  steps = c.ddim_steps if steps is None else steps
  eta = c.eta if eta is None else eta
  spacing = c.spacing if spacing is None else spacing
  weight = float(c.guidance if guidance is None else guidance)
  if sampler not in samplers.SAMPLERS:
    raise GenfamError(f"unknown sample.sampler {sampler!r}; use one of {samplers.SAMPLERS}")
  if not 0.0 <= float(eta) <= 1.0:  # also rejects NaN
    raise GenfamError(f"sample.eta={eta} is outside [0, 1]; set --config.sample.eta between 0 "
                      "(deterministic DDIM) and 1 (DDPM-like noise)")
  learned = _learned(config.diffusion)
  conditioning = conditioning or make_conditioning(config.model, spec, encode_text)
  net = make_net(config.model, spec, learned, conditioning.dim)
  sched, log_var = _process(config.diffusion)
  clip = bool(config.diffusion.clip_denoised)
  timesteps = samplers.ddim_timesteps(sched.num_steps, steps, spacing) if sampler == "ddim" else None
  form = guidance_form_of(c) if guidance_form is None else guidance_form
  scale = float(c.get("guidance_scale", 1.0) if guidance_scale is None else guidance_scale)
  if form not in GUIDANCE_FORMS:
    raise GenfamError(f"unknown sample.guidance_form {form!r}; use one of {GUIDANCE_FORMS}")
  if form != "free" and guide is None:
    raise GenfamError(f"sample.guidance_form={form!r} needs its noise-conditional model: set "
                      f"--config.sample.guidance_{form}_workdir=DIR and build the family as the loop does "
                      f"(genfam.loop.frozen.make_family), which restores it")
  class_prompts = None
  if form == "clip":
    from genfam.families.auxiliary import clip as clip_family
    class_prompts = jnp.asarray(clip_family.evaluation_prompts(spec)[0])                  # [C, L]

  def sample(params, rng, num: int, condition=None):
    guidance = None
    if form != "free":
      condition, guidance = gradient_guidance(form, scale, guide, conditioning, class_prompts, condition)
    eps_fn = guided_eps_fn(net, params, learned, conditioning, num, condition, weight)
    shape = (num,) + tuple(spec.image_shape)
    if sampler == "ddpm":
      x = samplers.ddpm_sample(eps_fn, sched, log_var, rng, shape, clip_x0=clip, guidance=guidance)
    else:
      x = samplers.ddim_sample(eps_fn, sched, timesteps, rng, shape, eta=eta, clip_x0=clip,
                               log_variance=log_var if learned else None, guidance=guidance)
    return samplers.to_pixels(x, spec.num_bins)

  return jax.jit(sample, static_argnums=2)


def make(config, spec, encode_text: Optional[Callable] = None, pilot=None, guide: Optional[Callable] = None
         ) -> Family:
  """The diffusion Family for dataset `spec` (genfam.data.spec.DatasetSpec); a caption model
  takes the frozen text encoder `encode_text` (`genfam.loop.frozen.family_inputs`); `pilot`: the
  importance-sampled bound's pilot images, a batch dict or a function returning one when first
  needed (the loop's `genfam.loop.frozen.pilot_batch`: the family reads no files); `guide`: the
  restored noise-conditional classifier or CLIP of sample.guidance_form (`genfam.loop.frozen.guide`)."""
  return make_family(config, spec, encode_text, pilot, guide)


class ImportanceLikelihood:
  """The importance-sampled bound as a likelihood function with a per-evaluation setup.

  fn(params, batch, rng) -> {name: [B]} runs the pilot (q from the parameters) and the
  estimate; prepare(params) runs the pilot once and returns the estimate with that q fixed,
  so an evaluation over many batches (`evaluate.likelihood_report`) pays for one pilot.
  """

  def __init__(self, proposal: Callable, estimate: Callable):
    self.proposal, self.estimate = proposal, estimate   # (params) -> q [T]; (params, batch, rng, q)

  def __call__(self, params, batch, rng):
    return self.estimate(params, batch, rng, self.proposal(params))

  def prepare(self, params):
    q = np.asarray(jax.jit(self.proposal)(params))
    prepared = lambda params, batch, rng: self.estimate(params, batch, rng, q)
    prepared.proposal = q
    return prepared


class _ImportanceOptions(NamedTuple):
  num_t: int
  pilot_examples: int
  pilot_timesteps: int
  uniform_share: float
  stratified: bool
  main: bool


def _importance_options(eval_config) -> _ImportanceOptions:
  """The eval.is_* keys, checked."""
  e = eval_config
  num_t, main = int(e.get("is_timesteps", 0)), bool(e.get("is_main", False))
  pilot_examples, pilot_timesteps = int(e.get("is_pilot_examples", 8)), int(e.get("is_pilot_timesteps", 64))
  share, sampling = float(e.get("is_uniform_share", 0.1)), e.get("is_sampling", "stratified")
  if num_t < 0:
    raise GenfamError(f"eval.is_timesteps={num_t}: set it >= 1 for the importance-sampled bound, or 0 for none")
  if main and num_t == 0:
    raise GenfamError("eval.is_main=True makes the importance-sampled bound the main likelihood: "
                      "set --config.eval.is_timesteps (e.g. 50)")
  if num_t and pilot_examples < 1:
    raise GenfamError(f"eval.is_pilot_examples={pilot_examples}: the proposal needs at least one pilot image")
  if num_t and not 0.0 < share <= 1.0:
    raise GenfamError(f"eval.is_uniform_share={share} must lie in (0, 1]: it bounds the importance weights "
                      "by (T - 1) / share")
  if sampling not in importance.SAMPLING:
    raise GenfamError(f"unknown eval.is_sampling {sampling!r}; use one of {importance.SAMPLING}")
  return _ImportanceOptions(num_t, pilot_examples, pilot_timesteps, share, sampling == "stratified", main)


def make_family(config, spec, encode_text: Optional[Callable] = None, pilot=None,
                guide: Optional[Callable] = None) -> Family:
  """The diffusion Family; encode_text(tokens [B, L]) -> [B, E] stands in for the frozen
  text encoder of a caption model (tests); `pilot` (a batch dict) for the importance
  sampler's pilot images (a batch dict, or a function returning one when first needed);
  guide(x_t, t, condition) -> [B] for gradient guidance (sample.guidance_form)."""
  d = config.diffusion
  learned = _learned(d)
  conditioning = make_conditioning(config.model, spec, encode_text)
  net = make_net(config.model, spec, learned, conditioning.dim)
  sched, log_var = _process(d)
  tx = optim.optimizer_from_config(config.optim)
  ema_decay = config.optim.ema_decay
  num_bins, num_dims, shape = spec.num_bins, spec.num_dims, tuple(spec.image_shape)
  if d.bound_condition not in BOUND_CONDITIONS:
    raise GenfamError(f"unknown diffusion.bound_condition {d.bound_condition!r}; use one of {BOUND_CONDITIONS}")
  if conditioning.kind == "caption" and d.bound_condition == "label":
    raise GenfamError("diffusion.bound_condition='label' is for a label model; set "
                      "--config.diffusion.bound_condition=caption (-log p(x | caption)) or null")
  if conditioning.kind != "caption" and d.bound_condition == "caption":
    raise GenfamError("diffusion.bound_condition='caption' needs a caption model; set "
                      "--config.model.condition=caption, or bound_condition to 'label' or 'null'")
  # The bound with the example's own label is that of the label mixture (+ log C): unconditional.
  own_caption = conditioning.kind == "caption" and d.bound_condition == "caption"
  with_label = conditioning.kind == "label" and d.bound_condition == "label"
  clip = bool(d.clip_denoised)
  objective, t_sampling = d.get("loss", "simple"), d.get("t_sampling", "uniform")
  hybrid_lambda, history = float(d.get("hybrid_lambda", 1e-3)), int(d.get("loss_history", 10))
  if objective not in losses.OBJECTIVES:
    raise GenfamError(f"unknown diffusion.loss {objective!r}; use one of {losses.OBJECTIVES}")
  if objective == "hybrid" and not learned:
    raise GenfamError("diffusion.loss='hybrid' trains only a learned variance with its L_vlb term; "
                      "set --config.diffusion.variance=learned or use loss='simple'")
  if objective == "simple" and learned:
    raise GenfamError("diffusion.variance='learned' gets no gradient from loss='simple'; "
                      "set --config.diffusion.loss=hybrid (or vlb)")
  if t_sampling not in losses.T_SAMPLING:
    raise GenfamError(f"unknown diffusion.t_sampling {t_sampling!r}; use one of {losses.T_SAMPLING}")
  importance_t = t_sampling == "importance"
  if importance_t and objective == "simple":
    raise GenfamError("diffusion.t_sampling='importance' samples t for the L_vlb term; "
                      "set --config.diffusion.loss to 'hybrid' or 'vlb', or t_sampling='uniform'")

  def check(batch):
    if tuple(batch["image"].shape[1:]) != shape:
      raise GenfamError(f"diffusion model built for images {shape}, got {tuple(batch['image'].shape[1:])}; "
                        "use the dataset the config names")

  def init(rng, batch):
    check(batch)
    x = jnp.zeros((1,) + shape, jnp.float32)
    condition = {"label": jnp.zeros((1,), jnp.int32), "caption": jnp.zeros((1, conditioning.dim), jnp.float32)
                 }.get(conditioning.kind)
    params = jax.jit(lambda r: net.init({"params": r}, x, jnp.zeros((1,), jnp.int32), condition, False))(
        rng)["params"]
    model_state = {"loss_history": losses.init_history(sched.num_steps, history)} if importance_t else None
    return optim.scalar_loss_family_state(params, tx, ema_decay, model_state)

  def loss_fn(params, model_state, batch, rng):
    # image uint8 [B, H, W, C] -> x_0 [B, H, W, C] on [-1, 1]; t [B]; eps [B, H, W, C]
    x0 = bin_centres(batch["image"], num_bins)
    rng_t, rng_noise, rng_drop = jax.random.split(rng, 3)
    if importance_t:
      probs = losses.t_probabilities(model_state["loss_history"])
      t, weights = losses.sample_t(rng_t, probs, x0.shape[0])
    else:
      t = jax.random.randint(rng_t, (x0.shape[0],), 0, sched.num_steps)
      weights = jnp.ones((x0.shape[0],), x0.dtype)
    noise = jax.random.normal(rng_noise, x0.shape, x0.dtype)
    condition = conditioning.of_batch(batch)                 # labels [B], embeddings [B, E] or None
    x_t = q_sample(sched, x0, t, noise)
    out = _split_net_output(net.apply({"params": params}, x_t, t, condition, True, rngs={"dropout": rng_drop}),
                            learned)
    per_example, l_t = losses.objective(objective, sched, log_var, batch["image"], x0, x_t, t, noise, out,
                                        num_bins, hybrid_lambda)
    loss = jnp.mean(weights * per_example)
    eps, _ = process.split_output(out)
    metrics = {"mse": jnp.mean(losses.mse_per_example(eps, noise))}
    if objective != "simple":
      metrics["vlb_term_bpd"] = jnp.mean(l_t)          # L_t in bits/dim at the sampled t
    if importance_t:
      model_state = {"loss_history": losses.update_history(model_state["loss_history"], t, l_t)}
    return loss, (metrics, model_state)

  def _bound_eps(params, batch):
    """eps_fn for the bound, and the label term in nats (0 or log C)."""
    eps_c = _eps_fn(net, params, learned)
    if with_label:
      return (lambda x, t: eps_c(x, t, batch["label"])), math.log(net.num_classes)
    if own_caption:  # each test image's own caption: -log p(x | caption)
      condition = conditioning.of_batch(batch)                                      # [B, E]
      return (lambda x, t: eps_c(x, t, condition)), 0.0
    return (lambda x, t: eps_c(x, t, None)), 0.0

  def to_bpd(nats):
    return nats_to_bpd(nats, num_dims)

  def log_likelihood(params, batch, rng):
    """Full bound, all T terms: {'bpd', 'prior_bpd', 'diffusion_bpd', 'decoder_bpd'[, 'label_bpd']}, each [B]."""
    eps_fn, label_nats = _bound_eps(params, batch)
    parts = bound.exact_vlb(eps_fn, sched, log_var, batch["image"], rng, num_bins,
                            chunk=d.vlb_chunk, clip_x0=clip)
    out = {"prior_bpd": to_bpd(parts["prior"]), "decoder_bpd": to_bpd(parts["terms"][0]),
           "diffusion_bpd": to_bpd(jnp.sum(parts["terms"][1:], axis=0))}
    if with_label:
      out["label_bpd"] = jnp.full_like(out["prior_bpd"], to_bpd(label_nats))
    out["bpd"] = sum(out.values())
    return out

  def sampled_likelihood(params, batch, rng):
    """Unbiased estimate from d.sampled_t sampled t: {'bpd', 'prior_bpd', 'terms_bpd'[, 'label_bpd']}."""
    eps_fn, label_nats = _bound_eps(params, batch)
    parts = bound.sampled_vlb(eps_fn, sched, log_var, batch["image"], rng, num_bins,
                              num_t=d.sampled_t, chunk=d.vlb_chunk, clip_x0=clip)
    out = {"prior_bpd": to_bpd(parts["prior"]), "terms_bpd": to_bpd(parts["terms"])}
    if label_nats:
      out["label_bpd"] = jnp.full_like(out["prior_bpd"], to_bpd(label_nats))
    out["bpd"] = sum(out.values())
    return out

  is_options = _importance_options(config.eval)
  pilot_cache = [pilot]

  def pilot_images():
    if callable(pilot_cache[0]):
      pilot_cache[0] = pilot_cache[0]()
    if pilot_cache[0] is None:
      raise GenfamError("the importance-sampled bound (eval.is_timesteps > 0) needs pilot images: build the "
                        "family with genfam.loop.frozen.make_family, which hands it non-test images")
    return {k: v[:is_options.pilot_examples] for k, v in pilot_cache[0].items()}

  pilot_grid = importance.pilot_grid(sched.num_steps, is_options.pilot_timesteps)
  pilot_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x9170)   # not a test batch's key

  def is_proposal(params):
    """q [T] from the pilot's terms at the grid's timesteps, with these parameters."""
    images = pilot_images()
    eps_fn, _ = _bound_eps(params, images)
    terms = importance.pilot_terms(eps_fn, sched, log_var, images["image"], pilot_key, num_bins, pilot_grid,
                                   chunk=d.vlb_chunk, clip_x0=clip)
    return importance.proposal(pilot_grid, terms, sched.num_steps, is_options.uniform_share)

  def is_estimate(params, batch, rng, q):
    """Unbiased estimate of the full bound from is_timesteps importance-sampled t:
    {'bpd', 'prior_bpd', 'decoder_bpd', 'diffusion_bpd'[, 'label_bpd'], 'timestep_variance'}."""
    eps_fn, label_nats = _bound_eps(params, batch)
    parts = importance.importance_vlb(eps_fn, sched, log_var, batch["image"], rng, num_bins, q=q,
                                      num_t=is_options.num_t, stratified=is_options.stratified,
                                      chunk=d.vlb_chunk, clip_x0=clip)
    out = {"prior_bpd": to_bpd(parts["prior"]), "decoder_bpd": to_bpd(parts["decoder"]),
           "diffusion_bpd": to_bpd(parts["diffusion"])}
    if with_label:
      out["label_bpd"] = jnp.full_like(out["prior_bpd"], to_bpd(label_nats))
    out["bpd"] = sum(out.values())
    out["timestep_variance"] = to_bpd(to_bpd(importance.timestep_variance(parts["weighted"],  # (bits/dim)^2
                                                                          is_options.stratified)))
    return out

  draw = make_sampler(config, spec, conditioning=conditioning, guide=guide)
  form = guidance_form_of(config.sample)

  def sample(params, rng, num, condition=None):
    """uint8 [num, H, W, C] in {0 .. K-1}; condition: int labels [num], caption tokens [num, L] or None."""
    return draw(params, rng, int(num), condition)

  main_fn, main_kind, extras = log_likelihood, "vlb", {}
  if d.sampled_t > 0:
    extras[f"vlb-sampled-{d.sampled_t}t"] = sampled_likelihood
  if is_options.num_t:
    is_fn, is_kind = ImportanceLikelihood(is_proposal, is_estimate), f"vlb-is-{is_options.num_t}t"
    if is_options.main:   # the full bound becomes an extra (on eval.extra_num_examples images)
      main_fn, main_kind, extras = is_fn, is_kind, {"vlb": log_likelihood, **extras}
    else:
      extras[is_kind] = is_fn
  return Family(name="diffusion", init=init, update=optim.make_scalar_loss_update(loss_fn, tx, ema_decay),
                eval_params=optim.eval_params, log_likelihood=main_fn, likelihood_kind=main_kind,
                sample=sample, extra_likelihoods=extras or None,
                likelihood_condition="caption" if own_caption else "",
                sample_condition=GUIDED_CONDITION.get(form, conditioning.kind))
