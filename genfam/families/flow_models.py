"""RealNVP and Glow as one bijector each: x [B, H, W, C] in [0, 1) -> eps [B, D].

Both are multi-scale flows (Dinh et al. 2017; Kingma & Dhariwal 2018) built
from the layers in `genfam.bijectors`. The whole model is a single bijector

  x --preprocess--> y --level 1--> ... --level L--> z_top --top prior--> eps_top
                                |                 |
                                split: z2 --split prior--> eps_1, ...

with every factored-out part and the top flattened and concatenated in a
fixed order into eps [B, D], D = H * W * C. Split and top priors are
conditional affine bijectors (learned Gaussians written as bijectors), so
  log p(x) = log N(eps; 0, I) + log|det d eps / dx|,
and a sample is x = f^-1(eps), eps ~ N(0, T^2 I) for temperature T.

The log-det comes in three labelled parts (nats, [B] each):
  'preprocess'  the fixed preprocessing (logit or affine scaling),
  'flow'        every learned layer (couplings, actnorm, 1x1 convs),
  'prior'       the learned priors' -sum log sigma,
so -log p(x) = -log N(eps) - prior - flow - preprocess.

Level plans (per level: layers before a squeeze, squeeze, layers after, split):
  RealNVP, num_levels = L squeezes: L times [3 checkerboard couplings, squeeze,
    3 channel couplings, factor out half], then 4 checkerboard couplings
    (counts configurable, alternating mask parity);
    logit preprocessing; factored-out halves are N(0, I) unless split_prior.
  Glow, L levels: [squeeze, K x (actnorm, 1x1 conv, affine coupling), split
    with a learned prior] with no split after the last; preprocessing
    y = scale * (x - 0.5); learned (optionally class-conditional) top prior.
"""
import itertools
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp

from genfam.bijectors.actnorm import ActNorm
from genfam.bijectors.base import Bijector
from genfam.bijectors.conditional_affine import ConditionalAffine
from genfam.bijectors.conv1x1 import Conv1x1
from genfam.bijectors.coupling import AffineCoupling, transformed_channels
from genfam.bijectors.logit import Logit
from genfam.bijectors.lu_conv1x1 import LUConv1x1
from genfam.bijectors.scaling import Scaling
from genfam.bijectors.squeeze import squeeze2x2, unsqueeze2x2
from genfam.nets.conv import GlowConditioner, ResNet


def gaussian_log_prob(eps: jax.Array) -> jax.Array:  # [B, D] -> [B]: log N(eps; 0, I) in nats
  return -0.5 * jnp.sum(jnp.square(eps) + math.log(2.0 * math.pi), axis=-1)


class MultiScaleFlow(Bijector):
  """Shared multi-scale skeleton; subclasses give `plan`, `make_preprocess`, `make_steps`.

  image_shape:  (H, W, C) of the data.
  num_levels:   number of squeezes (RealNVP) / levels (Glow).
  num_classes:  > 0 makes the top prior class-conditional (labels needed).
  split_prior:  learned conditional prior on each factored-out half.
  learn_top:    learned top prior (always on when num_classes > 0).
  """
  image_shape: tuple
  num_levels: int = 2
  num_classes: int = 0
  split_prior: bool = True
  learn_top: bool = True
  dtype: Any = jnp.float32   # the coupling networks' convolution products; log-dets stay float32

  # --- subclass hooks -------------------------------------------------------
  def plan(self):
    """[(squeeze: bool, split: bool)] per level."""
    raise NotImplementedError

  def make_preprocess(self) -> Bijector:
    raise NotImplementedError

  def make_steps(self, level: int, before_squeeze: bool, channels: int) -> list:
    raise NotImplementedError

  # --- static shapes --------------------------------------------------------
  def shapes(self):
    """(per-level (H, W, C) before squeezing, split shapes [(H, W, C2)], top shape)."""
    h, w, c = self.image_shape
    level_in, split_shapes = [], []
    for squeeze, split in self.plan():
      level_in.append((h, w, c))
      if squeeze:
        if h % 2 or w % 2:
          squeezes = sum(s for s, _ in self.plan())
          raise ValueError(f"image {self.image_shape[0]}x{self.image_shape[1]} cannot be squeezed "
                           f"{squeezes} times (height and width must divide by 2 per level); use fewer levels")
        h, w, c = h // 2, w // 2, 4 * c
      if split:
        split_shapes.append((h, w, c - c // 2))
        c = c // 2
    return level_in, split_shapes, (h, w, c)

  def setup(self):
    level_in, _, _ = self.shapes()
    self.preprocess = self.make_preprocess()
    before, after, priors = [], [], []
    for level, ((squeeze, split), (_, _, c)) in enumerate(zip(self.plan(), level_in)):
      before.append(self.make_steps(level, True, c))
      after.append(self.make_steps(level, False, 4 * c if squeeze else c))
      if split and self.split_prior:
        priors.append(ConditionalAffine())
    self.before, self.after, self.priors = before, after, priors
    if self.learn_top or self.num_classes > 0:
      self.top_prior = ConditionalAffine(num_classes=self.num_classes)

  def _has_top_prior(self):
    return self.learn_top or self.num_classes > 0

  # --- maps -----------------------------------------------------------------
  def forward_and_log_det_parts(self, x, label=None):  # [B, H, W, C] -> ([B, D], {part: [B]})
    if tuple(x.shape[1:]) != tuple(self.image_shape):
      raise ValueError(f"flow built for images {tuple(self.image_shape)} got {tuple(x.shape[1:])}")
    y, ld_pre = self.preprocess.forward_and_log_det(x)
    ld_flow = jnp.zeros_like(ld_pre)
    ld_prior = jnp.zeros_like(ld_pre)
    eps_parts, prior_index = [], 0
    for level, (squeeze, split) in enumerate(self.plan()):
      for b in self.before[level]:
        y, ld = b.forward_and_log_det(y)
        ld_flow += ld
      if squeeze:
        y = squeeze2x2(y)
      for b in self.after[level]:
        y, ld = b.forward_and_log_det(y)
        ld_flow += ld
      if split:
        k = y.shape[-1] // 2
        y, z2 = y[..., :k], y[..., k:]
        if self.split_prior:
          z2, ld = self.priors[prior_index].forward_and_log_det(z2, h=y)
          ld_prior += ld
          prior_index += 1
        eps_parts.append(z2.reshape(z2.shape[0], -1))
    if self._has_top_prior():
      y, ld = self.top_prior.forward_and_log_det(y, label=label)
      ld_prior += ld
    eps_parts.append(y.reshape(y.shape[0], -1))
    eps = jnp.concatenate(eps_parts, axis=-1)
    return eps, {"preprocess": ld_pre, "flow": ld_flow, "prior": ld_prior}

  def forward_and_log_det(self, x, label=None):  # [B, H, W, C] -> ([B, D], [B])
    eps, parts = self.forward_and_log_det_parts(x, label)
    return eps, parts["preprocess"] + parts["flow"] + parts["prior"]

  def log_prob_parts(self, x, label=None):  # [B, H, W, C] -> {part: [B] nats}
    """log p(x) = 'gaussian' + 'prior' + 'flow' + 'preprocess' (nats, [B] each)."""
    eps, parts = self.forward_and_log_det_parts(x, label)
    return dict(parts, gaussian=gaussian_log_prob(eps))

  def inverse_and_log_det(self, eps, label=None):  # [B, D] -> ([B, H, W, C], [B])
    _, split_shapes, top_shape = self.shapes()
    batch = eps.shape[0]
    sizes = [math.prod(s) for s in split_shapes] + [math.prod(top_shape)]
    if eps.shape[1:] != (sum(sizes),):
      raise ValueError(f"flow latent must be [B, {sum(sizes)}], got {eps.shape}")
    pieces = jnp.split(eps, list(itertools.accumulate(sizes[:-1])), axis=-1)
    log_det = jnp.zeros((batch,), eps.dtype)
    y = pieces[-1].reshape((batch,) + top_shape)
    if self._has_top_prior():
      y, ld = self.top_prior.inverse_and_log_det(y, label=label)
      log_det += ld
    split_index = len(split_shapes)
    prior_index = len(self.priors) if self.split_prior else 0
    for level in reversed(range(len(self.plan()))):
      squeeze, split = self.plan()[level]
      if split:
        split_index -= 1
        z2 = pieces[split_index].reshape((batch,) + split_shapes[split_index])
        if self.split_prior:
          prior_index -= 1
          z2, ld = self.priors[prior_index].inverse_and_log_det(z2, h=y)
          log_det += ld
        y = jnp.concatenate([y, z2], axis=-1)
      for b in reversed(self.after[level]):
        y, ld = b.inverse_and_log_det(y)
        log_det += ld
      if squeeze:
        y = unsqueeze2x2(y)
      for b in reversed(self.before[level]):
        y, ld = b.inverse_and_log_det(y)
        log_det += ld
    x, ld = self.preprocess.inverse_and_log_det(y)
    return x, log_det + ld


class RealNVP(MultiScaleFlow):
  """Dinh et al.'s multi-scale RealNVP with ResNet conditioners (no batch norm).

  width / num_blocks / norm: the conditioner ResNet ('layer', 'group' or 'none'
  normalisation inside its residual blocks); scale_fn: 'tanh', 'softclamp'
  (|log s| < max_log_scale) or 'sigmoid' (genfam.bijectors.coupling);
  logit_alpha: the margin a of the logit preprocessing; couplings: how many
  (checkerboard, channel) couplings per scale and checkerboard couplings in
  the final scale, (3, 3, 4) in the paper.
  """
  couplings: tuple = (3, 3, 4)
  width: int = 32
  num_blocks: int = 1
  norm: str = "layer"
  scale_fn: str = "tanh"
  max_log_scale: float = 1.0
  logit_alpha: float = 0.05
  split_prior: bool = False
  learn_top: bool = False

  def plan(self):
    return [(True, True)] * self.num_levels + [(False, False)]

  def make_preprocess(self):
    return Logit(alpha=self.logit_alpha)

  def make_steps(self, level, before_squeeze, channels):
    final = level == self.num_levels
    checkerboard, channel, last = self.couplings
    if before_squeeze:
      masks = [("checkerboard", p % 2) for p in range(last if final else checkerboard)]
    else:
      masks = [] if final else [("channel", p % 2) for p in range(channel)]
    return [AffineCoupling(
        ResNet(self.width, self.num_blocks, 2 * transformed_channels(m, p, channels), zero_out=True,
               norm=self.norm, dtype=self.dtype),
        mask=m, parity=p, scale_fn=self.scale_fn, max_log_scale=self.max_log_scale) for m, p in masks]


class Glow(MultiScaleFlow):
  """Kingma & Dhariwal's Glow: L levels of K (actnorm, 1x1 conv, coupling) steps.

  num_steps: K; width: hidden channels of the coupling network;
  lu / lu_identity_init: LU-decomposed 1x1 convolution (else plain, orthogonal);
  scale_fn: 'softclamp' (log s = a tanh(h / a), a = max_log_scale: each coupling's
  inverse gains at most e^a), Glow's 'sigmoid' (s = sigmoid(h + 2), whose inverse
  gain reaches 10^4 per coupling: temperature-1 samples blew up, issue 30) or 'tanh';
  input_scale: preprocessing y = s (x - 0.5).
  """
  num_steps: int = 8
  width: int = 64
  lu: bool = True
  lu_identity_init: bool = False
  scale_fn: str = "softclamp"
  max_log_scale: float = 1.0
  input_scale: float = 1.0

  def plan(self):
    return [(True, level < self.num_levels - 1) for level in range(self.num_levels)]

  def make_preprocess(self):
    return Scaling(scale=self.input_scale, shift=-0.5)

  def make_steps(self, level, before_squeeze, channels):
    if before_squeeze:
      return []
    steps = []
    for k in range(self.num_steps):
      n = transformed_channels("channel", k % 2, channels)
      mix = LUConv1x1(identity_init=self.lu_identity_init) if self.lu else Conv1x1()
      steps += [ActNorm(), mix,
                AffineCoupling(GlowConditioner(self.width, 2 * n, dtype=self.dtype), mask="channel",
                               parity=k % 2, scale_fn=self.scale_fn, max_log_scale=self.max_log_scale)]
    return steps


def latent_size(image_shape) -> int:
  """D: the length of eps for images of this shape (the flow keeps dimension)."""
  return int(math.prod(image_shape))
