"""The conditional GAN family: GAN-CLS + GAN-INT (Reed et al. 2016), its likelihood by AIS.

Condition. `model.condition` = 'label' (c = one-hot label [B, C]) or
'caption' (c = a FROZEN text encoder's embedding of the caption tokens [B, E],
CLIP's `encode_text` of `model.text_encoder_workdir`, restored by the loop,
`genfam.loop.frozen.family_inputs`, and handed to `make`; no gradient reaches it). Both networks project c
and join it with z (G) or with the image features (D): `genfam.nets.gan_nets`.

Data. Real images are dequantized, y = (x + u) / K in [0, 1)^D, the space of
the likelihood below; G outputs pixel means in (0, 1).

Discriminator loss (matching-aware, GAN-CLS), with s = D(image, c) a logit
and BCE written with softplus (log sigmoid(s) = -softplus(-s)):
  L_D = softplus(-s_r) + 1/2 [ softplus(s_w) + softplus(s_f) ]  (+ R1)
    s_r = D(y, c)           real image, its own condition     target real
    s_w = D(y, c_wrong)     real image, a mismatched condition target fake
    s_f = D(G(z, c), c)     generated image, its condition     target fake
  c_wrong: labels shifted by a random non-zero offset mod C (never the true
  label); captions rolled by one within the batch (a rolled caption may name
  the same class, as in Reed et al.'s sampling of wrong text).
  R1 (Mescheder et al. 2018), the stabilisation: (gamma / 2) E ||grad_y D(y, c)||^2
  on the real matching pairs (`model.r1_gamma`; 0 disables it).
Generator loss (non-saturating), GAN-INT (beta = 0.5):
  L_G = softplus(-D(G(z, c), c)) + w_int softplus(-D(G(z', c_int), c_int)),
  c_int = 0.5 c + 0.5 roll(c): interpolated conditions train G only; the
  discriminator is never updated on them (its step runs before and uses none).
One jitted `update` holds a D step (Adam, optim.d_learning_rate) and then a G
step against the updated D (Adam, optim.learning_rate), with their own optax
states and split keys (both `genfam.optim.optimizer_from_config` of the optim
section, so every key counts: warm-up, cosine decay, clipping, weight decay, betas;
D's with optim.d_learning_rate: `optimizers`), and an EMA of G's weights
(optim.ema_decay, warmed up) that evaluation and sampling use. The metric
'loss' = L_D + L_G (the sum, so a non-finite value in either step skips the
step); 'd_loss', 'g_loss' and the per-pair losses and accuracies are logged apart. 'sample_diversity' =
mean_i |G(z_i, c_i) - G(z'_i, c_i)| / mean_i |y_i - y_{i+1}| (two draws of the
same condition against the spread of real images, L2 over pixels);
'alert_mode_collapse' = 1 when it falls below `model.collapse_threshold`.

Likelihood (kind 'ais', Wu et al. 2017): the observation model
p(y | z, c) = N(G_ema(z, c), sigma^2 I_D) on the dequantized y, p(z) = N(0, I),
and log p(y | c) estimated by forward AIS (`genfam.likelihood.ais`: sigmoid schedule of
eval.ais_steps steps, BlackJAX HMC with eval.ais_leapfrog leapfrog steps,
eval.ais_chains chains per image combined by log-mean-exp, step size adapted
toward 0.65 acceptance through eval.ais_adapt_chains pilot chains). It is a
stochastic lower bound on log p(y | c), so the bits/dim
  bpd = (-log p-hat(y | c) + D log K) / (D log 2)
      = density_bpd + discretization_bpd (= log2 K)
is a stochastic upper bound on the model's. sigma^2 = eval.ais_sigma2 is
chosen on validation images carved from the TRAIN split by
`experiments/studies/gan_ais_sigma.py` (never on test) and passed on the command line;
the report carries 'sigma2', 'ais_steps', 'ais_chains' with the number.
The likelihood is conditional: -log p(x | label) or -log p(x | caption).
"""
import math
from typing import Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genfam.errors import GenfamError
from genfam.family import Family
from genfam.likelihood import ais
from genfam.likelihood.bits import dequantize, nats_to_bpd
from genfam.nets.gan_nets import Discriminator, Generator, check_levels
from genfam.optim import ema_decay_at, ema_update, optimizer_from_config

CONDITIONS = ("label", "caption")
GAN_INT_BETA = 0.5


@flax.struct.dataclass
class GANState:
  """Train state: both networks, their optimizer states, G's EMA and the update count."""
  g_params: dict
  d_params: dict
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  g_ema: dict
  step: jax.Array


# ----------------------------------------------------------------------------
# The losses and statistics as plain functions of arrays.
# ----------------------------------------------------------------------------


def discriminator_loss(real_logits, wrong_logits, fake_logits):
  """GAN-CLS: L_D = mean softplus(-s_r) + 1/2 [mean softplus(s_w) + mean softplus(s_f)].

  real (target real), wrong = real image with a mismatched condition (target
  fake), fake = generated image with its condition (target fake); each [B].
  -> (loss [], {'d_loss_real', 'd_loss_wrong', 'd_loss_fake', 'd_acc_real',
  'd_acc_wrong', 'd_acc_fake'}): per-pair BCE and accuracy (logit on the right side of 0).
  """
  real = jnp.mean(jax.nn.softplus(-real_logits))
  wrong = jnp.mean(jax.nn.softplus(wrong_logits))
  fake = jnp.mean(jax.nn.softplus(fake_logits))
  parts = {"d_loss_real": real, "d_loss_wrong": wrong, "d_loss_fake": fake,
           "d_acc_real": jnp.mean(real_logits > 0), "d_acc_wrong": jnp.mean(wrong_logits < 0),
           "d_acc_fake": jnp.mean(fake_logits < 0)}
  return real + 0.5 * (wrong + fake), parts


def generator_loss(fake_logits):
  """Non-saturating: mean softplus(-D(G(z, c), c)) = -mean log sigmoid(s)."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def wrong_labels(rng, label, num_classes: int):
  """(label + k) mod C with k ~ U{1..C-1}: a label that is never the true one. [B] int32."""
  offset = jax.random.randint(rng, label.shape, 1, num_classes)
  return (label + offset) % num_classes


def interpolate_conditions(c, beta: float = GAN_INT_BETA):
  """GAN-INT: beta c_i + (1 - beta) c_{i+1 mod B}, [B, E] -> [B, E]."""
  return beta * c + (1.0 - beta) * jnp.roll(c, 1, axis=0)


def sample_diversity(first, second, real):
  """mean_i |first_i - second_i| / mean_i |real_i - real_{i+1}| (L2 over pixels).

  first, second: [B, ...] two draws for the same conditions; real: [B, ...].
  ~1 when G varies as much as real images do, 0 for identical draws.
  """
  def dist(a, b):
    return jnp.sqrt(jnp.sum((a - b).reshape(a.shape[0], -1) ** 2, axis=-1))
  return jnp.mean(dist(first, second)) / jnp.maximum(jnp.mean(dist(real, jnp.roll(real, 1, axis=0))), 1e-8)


def r1_penalty(d_fn, y, c):
  """E_B ||grad_y D(y, c)||^2 on real images: d_fn(y [B, ...], c) -> logits [B]."""
  grad = jax.grad(lambda yy: jnp.sum(d_fn(yy, c)))(y)
  return jnp.mean(jnp.sum(grad.reshape(y.shape[0], -1) ** 2, axis=-1))


def to_pixels(mean, num_bins: int):
  """Pixel means in (0, 1) -> uint8 bins floor(K m) in {0..K-1} (the picture of G's mean)."""
  return jnp.clip(jnp.floor(mean * num_bins), 0, num_bins - 1).astype(jnp.uint8)


# ----------------------------------------------------------------------------
# The model, read from the config at the edge.
# ----------------------------------------------------------------------------


class GAN(NamedTuple):
  """What the family's functions share: the nets and how conditions become vectors.

  condition_vector(batch) -> c [B, E_in] float32 (the batch's labels or captions);
  labels_to_condition(label [N]) -> c [N, E_in]; tokens_to_condition(tokens [N, L]) or None.
  """
  generator: Generator
  discriminator: Discriminator
  latent_dim: int
  condition: str
  num_classes: int
  condition_vector: Callable
  labels_to_condition: Callable
  tokens_to_condition: Optional[Callable]


def build(config, spec, encode_text: Optional[Callable] = None) -> GAN:
  """The GAN of `config.model` for `spec`. encode_text(tokens [B, L]) -> [B, E]: a caption
  model's frozen text encoder of model.text_encoder_workdir (`genfam.loop.frozen.family_inputs`),
  or a stand-in (tests)."""
  m = config.model
  if m.condition not in CONDITIONS:
    raise GenfamError(f"unknown config.model.condition {m.condition!r}; use one of {CONDITIONS}")
  check_levels(tuple(spec.image_shape), m.num_levels)
  num_classes = spec.num_classes
  if num_classes < 2:
    raise GenfamError(f"dataset {spec.name!r} has no classes to condition on; use a labelled dataset")

  def labels_one_hot(label):
    return jax.nn.one_hot(jnp.asarray(label, jnp.int32), num_classes, dtype=jnp.float32)

  if m.condition == "label":
    tokens_to_condition = None
    labels_to_condition = labels_one_hot

    def condition_vector(batch):
      return labels_one_hot(batch["label"])
  else:
    if encode_text is None:
      raise GenfamError("config.model.condition='caption' needs the frozen text encoder of "
                        "model.text_encoder_workdir: build the family as the loop does "
                        "(genfam.loop.frozen.make_family), which restores it")
    from genfam.families.auxiliary import clip
    # A label becomes the caption 'a photo of a <class>' (for label-ordered sample grids).
    class_prompts = jnp.asarray(clip.prompt_tokens(spec, [clip.prompt(spec, k) for k in range(num_classes)]))

    def tokens_to_condition(tokens):
      return jnp.asarray(encode_text(jnp.asarray(tokens, jnp.int32)), jnp.float32)

    def labels_to_condition(label):
      return tokens_to_condition(class_prompts[jnp.asarray(label, jnp.int32)])

    def condition_vector(batch):
      if "caption" not in batch:
        raise GenfamError("config.model.condition='caption' but batches carry no 'caption'; "
                          "use a captioned dataset or --config.model.condition=label")
      return tokens_to_condition(batch["caption"])

  shape = tuple(spec.image_shape)
  dtype = m.get("dtype", "float32")
  generator = Generator(shape, m.g_channels, m.num_levels, m.cond_features, dtype)
  discriminator = Discriminator(shape, m.d_channels, m.num_levels, m.cond_features, dtype)
  return GAN(generator, discriminator, m.latent_dim, m.condition, num_classes, condition_vector,
             labels_to_condition, tokens_to_condition)


def make_update(gan: GAN, g_tx, d_tx, num_bins: int, ema_decay: float, r1_gamma: float, gan_int: bool,
                gan_int_weight: float, collapse_threshold: float):
  """update(state, batch, rng) -> (state, metrics): one D step, then one G step (module docstring)."""
  g_apply, d_apply = gan.generator.apply, gan.discriminator.apply

  def update(state: GANState, batch, rng):
    k_deq, k_zd, k_zg, k_zi, k_wrong = jax.random.split(rng, 5)
    y = dequantize(k_deq, batch["image"], num_bins)                          # [B, H, W, C] in [0, 1)
    b = y.shape[0]
    c = gan.condition_vector(batch)                                           # [B, E]
    if gan.condition == "label":
      c_wrong = gan.labels_to_condition(wrong_labels(k_wrong, batch["label"], gan.num_classes))
    else:
      c_wrong = jnp.roll(c, 1, axis=0)
    z_d = jax.random.normal(k_zd, (b, gan.latent_dim))
    z_g = jax.random.normal(k_zg, (b, gan.latent_dim))
    fake_d = g_apply({"params": state.g_params}, z_d, c)                      # [B, H, W, C]

    # --- discriminator step: the three pairs of GAN-CLS (+ R1)
    def d_loss_fn(d_params):
      d_fn = lambda image, cond: d_apply({"params": d_params}, image, cond)
      loss, parts = discriminator_loss(d_fn(y, c), d_fn(y, c_wrong), d_fn(fake_d, c))
      parts["d_loss_gan"] = loss
      if r1_gamma > 0:
        parts["r1"] = r1_penalty(d_fn, y, c)
        loss = loss + 0.5 * r1_gamma * parts["r1"]
      return loss, parts

    (d_loss, d_parts), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    # --- generator step against the updated D, with GAN-INT's interpolated conditions
    def g_loss_fn(g_params):
      d_fn = lambda image, cond: d_apply({"params": d_params}, image, cond)
      fake = g_apply({"params": g_params}, z_g, c)
      loss_cls = generator_loss(d_fn(fake, c))
      parts = {"g_loss_cls": loss_cls}
      loss = loss_cls
      if gan_int:
        c_int = interpolate_conditions(c)
        parts["g_loss_int"] = generator_loss(d_fn(g_apply({"params": g_params}, jax.random.normal(
            k_zi, (b, gan.latent_dim)), c_int), c_int))
        loss = loss + gan_int_weight * parts["g_loss_int"]
      return loss, (parts, fake)

    (g_loss, (g_parts, fake_g)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
    g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    g_ema = ema_update(state.g_ema, g_params, ema_decay_at(ema_decay, state.step))

    diversity = sample_diversity(fake_d, jax.lax.stop_gradient(fake_g), y)
    metrics = dict(d_parts, **g_parts)
    metrics.update(loss=d_loss + g_loss, d_loss=d_loss, g_loss=g_loss,
                   d_grad_norm=optax.tree.norm(d_grads), g_grad_norm=optax.tree.norm(g_grads),
                   sample_diversity=diversity,
                   alert_mode_collapse=(diversity < collapse_threshold).astype(jnp.float32))
    new = GANState(g_params=g_params, d_params=d_params, g_opt_state=g_opt_state, d_opt_state=d_opt_state,
                   g_ema=g_ema, step=state.step + 1)
    return new, metrics

  return update


def log_likelihood_fn(gan: GAN, num_dims: int, num_bins: int, sigma2: float, num_steps: int,
                      num_chains: int, adapt_chains: int, num_leapfrog: int, step_size: float):
  """AIS estimate of -log p(x | c) in bits/dim (kind 'ais'), per example [B]:
  {'bpd', 'density_bpd', 'discretization_bpd', 'sigma2', 'ais_steps', 'ais_chains',
  'ais_acceptance', 'ais_step_size'}; bpd = density_bpd + discretization_bpd."""
  if sigma2 <= 0:
    raise GenfamError(f"eval.ais_sigma2={sigma2} must be > 0; pick it with experiments/studies/gan_ais_sigma.py")

  def log_likelihood(params, batch, rng):
    k_deq, k_ais = jax.random.split(rng)
    y = dequantize(k_deq, batch["image"], num_bins)                          # [B, H, W, C]
    b = y.shape[0]
    result = ais_log_marginal(gan, params, y.reshape(b, -1), gan.condition_vector(batch), k_ais, sigma2,
                              num_steps, num_chains, adapt_chains, num_leapfrog, step_size)
    bpd = ais_bpd(result.log_estimate, num_dims, num_bins)                  # [B]
    full = lambda v: jnp.full((b,), v, jnp.float32)
    discretization = full(math.log2(num_bins))
    return {"bpd": bpd, "density_bpd": bpd - discretization, "discretization_bpd": discretization,
            "sigma2": full(sigma2), "ais_steps": full(num_steps), "ais_chains": full(num_chains),
            "ais_acceptance": result.acceptance, "ais_step_size": result.step_size}

  return log_likelihood


def ais_bpd(log_p, num_dims: int, num_bins: int):
  """log p(y | c) of dequantized y (nats) -> bits/dim of the discrete image:
  nats_to_bpd(-log p, D) + log2 K (the dequantization's fixed Jacobian, docs/DESIGN.md)."""
  return nats_to_bpd(-log_p, num_dims) + math.log2(num_bins)


def ais_log_marginal(gan: GAN, g_params, y, c, rng, sigma2: float, num_steps: int, num_chains: int,
                     adapt_chains: int = 1, num_leapfrog: int = 10, step_size: float = 0.05) -> ais.AISResult:
  """Forward AIS for log p(y | c) = log int N(z; 0, I) N(y; G(z, c), sigma2 I) dz (nats).
  y [B, D] dequantized pixels in [0, 1), c [B, E]."""

  def log_lik(z, datum):  # z [L] -> log N(y; G(z, c), sigma2 I)
    yi, ci = datum
    mean = gan.generator.apply({"params": g_params}, z[None], ci[None])[0].reshape(-1)
    return ais.gaussian_log_likelihood(mean, yi, sigma2)

  return ais.forward_ais(log_lik, (y, c), gan.latent_dim, rng, num_steps=num_steps, num_chains=num_chains,
                         adapt_chains=adapt_chains, num_leapfrog=num_leapfrog, step_size=step_size)


def check_knobs(temperature: float, truncation: float) -> None:
  """Refuses a negative sample.temperature or sample.truncation in one line."""
  if not temperature >= 0:
    raise GenfamError(f"sample.temperature={temperature} must be >= 0; 1 samples the model as trained")
  if not truncation >= 0:
    raise GenfamError(f"sample.truncation={truncation} must be >= 0; 0 turns truncation off")


def latent_noise(rng, num: int, latent_dim: int, temperature: float = 1.0, truncation: float = 0.0):
  """The sampler's noise z [num, latent_dim] = temperature * u, u_i ~ N(0, 1) i.i.d., or with
  truncation tau > 0 the truncation trick (Brock et al. 2019): u_i ~ N(0, 1) conditioned on
  |u_i| <= tau (the law of redrawing every |u_i| > tau until it falls inside), so |z_i| <= T tau.
  tau = 0 (off) draws exactly the untruncated normal; smaller tau, less diverse samples."""
  check_knobs(temperature, truncation)
  if truncation > 0:
    u = jax.random.truncated_normal(rng, -truncation, truncation, (num, latent_dim))
  else:
    u = jax.random.normal(rng, (num, latent_dim))
  return temperature * u


def sample_fn(gan: GAN, num_bins: int, temperature: float, truncation: float = 0.0):
  """sample(params, rng, num, condition=None) -> uint8 [num, H, W, C]: the picture of G_ema's
  mean floor(K G(z, c)) (no observation noise), z = `latent_noise` (temperature T, truncation tau:
  the quality-diversity knobs sample.temperature and sample.truncation; T = 1, tau = 0 sample the
  model as trained).

  condition: None (labels 0, 1, .., C-1, 0, ..), int labels [num], or caption
  tokens int32 [num, L] (caption model only). A caption model turns a label k
  into the caption 'a photo of a <class k>'.
  """
  draw = jax.jit(lambda params, z, c: to_pixels(gan.generator.apply({"params": params}, z, c), num_bins))
  check_knobs(temperature, truncation)   # a bad knob is refused when the family is built

  def sample(params, rng, num: int, condition=None):
    c = condition_for_sampling(gan, num, condition)
    z = latent_noise(rng, num, gan.latent_dim, temperature, truncation)
    return draw(params, z, c)

  return sample


def condition_for_sampling(gan: GAN, num: int, condition=None):
  """Labels [num] / tokens [num, L] / None -> c [num, E_in] (see `sample_fn`)."""
  if condition is None:
    return gan.labels_to_condition(jnp.arange(num) % gan.num_classes)
  condition = np.asarray(condition)
  if condition.ndim == 1:
    return gan.labels_to_condition(condition)
  if gan.tokens_to_condition is None:
    raise GenfamError("caption tokens given to a label-conditioned GAN; pass int labels [num], or train "
                      "with --config.model.condition=caption")
  return gan.tokens_to_condition(condition)


def optimizers(optim_config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """(G's, D's) optimizer: `optimizer_from_config` of the optim section, D's with
  optim.d_learning_rate for the learning rate (every other key shared)."""
  d_config = ml_collections.ConfigDict(dict(optim_config.items(), learning_rate=optim_config.d_learning_rate))
  return optimizer_from_config(optim_config), optimizer_from_config(d_config)


def make_family(config, spec, encode_text: Optional[Callable] = None) -> Family:
  """The GAN family; encode_text stands in for the frozen text encoder (tests)."""
  gan = build(config, spec, encode_text)
  m, o, e = config.model, config.optim, config.eval
  g_tx, d_tx = optimizers(o)
  shape = tuple(spec.image_shape)

  def init(rng, batch):
    if tuple(batch["image"].shape[1:]) != shape:
      raise GenfamError(f"GAN built for images {shape} got {tuple(batch['image'].shape[1:])}; "
                        "the config's data.name and the batches disagree")
    k_g, k_d = jax.random.split(rng)
    c = gan.condition_vector({k: v[:1] for k, v in batch.items()})           # [1, E]
    z = jnp.zeros((1, gan.latent_dim))
    g_params = gan.generator.init(k_g, z, c)["params"]
    d_params = gan.discriminator.init(k_d, jnp.zeros((1,) + shape), c)["params"]
    return GANState(g_params=g_params, d_params=d_params, g_opt_state=g_tx.init(g_params),
                    d_opt_state=d_tx.init(d_params), g_ema=jax.tree.map(jnp.copy, g_params),
                    step=jnp.int32(0))

  update = make_update(gan, g_tx, d_tx, spec.num_bins, o.ema_decay, m.r1_gamma, m.gan_int, m.gan_int_weight,
                       m.collapse_threshold)
  log_likelihood = log_likelihood_fn(gan, spec.num_dims, spec.num_bins, e.ais_sigma2, e.ais_steps, e.ais_chains,
                                     e.ais_adapt_chains, e.ais_leapfrog, e.ais_step_size)
  return Family(name="gan", init=init, update=update, eval_params=lambda state: state.g_ema,
                log_likelihood=log_likelihood, likelihood_kind="ais",
                sample=sample_fn(gan, spec.num_bins, config.sample.temperature, config.sample.get("truncation", 0.0)),
                likelihood_condition=gan.condition,
                likelihood_note=(f"AIS with the Gaussian observation model N(G(z, c), {e.ais_sigma2:g} I): a "
                                 "stochastic upper bound (in expectation) on the dequantized density's NLL, itself "
                                 "an upper bound on the discrete NLL"),
                exports={"generate": lambda params, z, c: gan.generator.apply({"params": params}, z, c),
                         "condition": lambda params, batch: gan.condition_vector(batch)})


def make(config, spec, encode_text: Optional[Callable] = None) -> Family:
  """The GAN family for dataset `spec`, configured by configs/gan.py; a caption model takes
  the frozen text encoder `encode_text` (`genfam.loop.frozen.family_inputs`)."""
  return make_family(config, spec, encode_text)
