"""A time- and label- (or caption-) conditioned U-Net for diffusion (Flax Linen).

The layout follows Ho et al.'s DDPM U-Net at small scale: a stem conv, then
per resolution level `num_res_blocks` residual blocks (group norm, SiLU, the
time/label embedding added between the two convs, dropout), self-attention at
the spatial sizes listed in `attn_resolutions`, a stride-2 conv down; a middle
block (res, attention, res); and the mirror path up with skip connections and
nearest-neighbour upsampling. Each level halves the spatial size, so the sizes
must divide by 2^(levels - 1): 28 -> 14 -> 7 with channel_mult of length 3
(no padding to 32), 8 -> 4 -> 2, 32 -> 16 -> 8 -> 4.

Conditioning: with num_classes = C > 0 a label embedding of C + 1 rows is
added to the time embedding; row C is the learned null label used for
classifier-free guidance. With condition_dim = E > 0 (exclusive with labels)
the condition is a vector c [B, E] (a frozen text encoder's pooled caption
embedding), and what is added in the same place is
  e(c) = Dense(silu(Dense(c)))   [B, 4 * base_channels],
or a learned null embedding e_null where the condition is absent (None: every
row) or dropped. In training (train=True) each label / condition is replaced by
the null one with probability p_uncond (rng stream 'dropout'); at evaluation
(train=False) nothing is dropped.

Modules take plain arguments, never configs.
"""
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from genfam.cpu.matmul_conv import Conv


def timestep_embedding(t, dim: int, max_period: float = 10000.0):
  """Sinusoidal embedding of timesteps: [B] (int or float) -> [B, dim] float32."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def _group_norm(x, num_groups: int):
  return nn.GroupNorm(num_groups=math.gcd(num_groups, x.shape[-1]))(x)


class TimeResBlock(nn.Module):
  """norm-act-conv, + Dense(emb), norm-act-dropout-conv(zero init), residual.

  [B, H, W, Cin], emb [B, E] -> [B, H, W, features].
  """
  features: int
  dropout: float = 0.0
  num_groups: int = 8
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @nn.compact
  def __call__(self, x, emb, train: bool = False):
    h = Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype)(nn.silu(_group_norm(x, self.num_groups)))
    h = h + nn.Dense(self.features)(nn.silu(emb))[:, None, None, :]
    h = nn.silu(_group_norm(h, self.num_groups))
    if self.dropout > 0:
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = Conv(self.features, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros, dtype=self.dtype)(h)
    if x.shape[-1] != self.features:
      x = Conv(self.features, (1, 1), dtype=self.dtype)(x)
    return x + h


class SelfAttention(nn.Module):
  """Multi-head self-attention over the H*W positions, residual, output starts at zero.

  [B, H, W, C] -> [B, H, W, C]; C must divide by num_heads.
  """
  num_heads: int = 1
  num_groups: int = 8

  @nn.compact
  def __call__(self, x):
    b, hgt, wid, c = x.shape
    head = c // self.num_heads
    h = _group_norm(x, self.num_groups).reshape(b, hgt * wid, c)
    q, k, v = jnp.split(nn.Dense(3 * c)(h).reshape(b, hgt * wid, 3 * self.num_heads, head), 3, axis=2)
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head), axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, hgt * wid, c)
    out = nn.Dense(c, kernel_init=nn.initializers.zeros)(out)
    return x + out.reshape(b, hgt, wid, c)


class UNet(nn.Module):
  """eps_theta(x_t, t, condition): [B, H, W, C] float, [B] int, condition -> [B, H, W, out_channels].

  condition: int labels [B] (num_classes > 0), float vectors [B, E] (condition_dim = E > 0),
  or None: the null label / null embedding (and ignored by an unconditional net).

  out_channels:     channels of the output (C for an eps prediction; 2C for eps and the
                    learned-variance interpolation of improved DDPM, split by the family).
  base_channels:    width of the first level; level i has base * channel_mult[i].
  channel_mult:     one entry per resolution level.
  num_res_blocks:   residual blocks per level on the way down (one more up).
  attn_resolutions: spatial sizes (e.g. (7,)) at which blocks get self-attention.
  dropout:          dropout rate inside residual blocks (train=True only).
  num_classes:      C > 0 adds a label embedding with a null label at index C.
  condition_dim:    E > 0 adds the projection of a condition vector [B, E] and a learned null
                    embedding (exclusive with num_classes).
  p_uncond:         probability of replacing a label / condition by the null one (train only).
  """
  out_channels: int
  base_channels: int = 32
  channel_mult: tuple = (1, 2, 2)
  num_res_blocks: int = 1
  attn_resolutions: tuple = (7,)
  dropout: float = 0.1
  num_classes: int = 0
  condition_dim: int = 0
  p_uncond: float = 0.1
  num_heads: int = 1
  num_groups: int = 8
  mid_attention: bool = True
  dtype: Any = jnp.float32     # convolution product dtype (bfloat16: mixed precision)

  @property
  def null_label(self) -> int:
    return self.num_classes

  def _label(self, label, batch: int, train: bool):
    if label is None:
      label = jnp.full((batch,), self.null_label, jnp.int32)
    label = label.astype(jnp.int32)
    if train and self.p_uncond > 0:
      drop = jax.random.bernoulli(self.make_rng("dropout"), self.p_uncond, (batch,))
      label = jnp.where(drop, self.null_label, label)
    return label

  def _condition_embedding(self, condition, batch: int, train: bool, emb_dim: int):
    """c [B, E] or None -> [B, emb_dim]: Dense(silu(Dense(c))), or e_null where c is None or dropped."""
    null = self.param("null_condition", nn.initializers.normal(1.0 / math.sqrt(emb_dim)), (emb_dim,))
    if condition is None:  # the projection is still built, so that init without a condition makes it
      condition = jnp.zeros((batch, self.condition_dim), jnp.float32)
      use_null = jnp.ones((batch,), bool)
    else:
      if condition.shape != (batch, self.condition_dim):
        raise ValueError(f"UNet with condition_dim={self.condition_dim} got a condition of shape "
                         f"{condition.shape}; pass [B, {self.condition_dim}] float vectors")
      use_null = jnp.zeros((batch,), bool)
    projected = nn.Dense(emb_dim, name="condition_out")(
        nn.silu(nn.Dense(emb_dim, name="condition_in")(condition.astype(jnp.float32))))   # [B, emb_dim]
    if train and self.p_uncond > 0:
      use_null = use_null | jax.random.bernoulli(self.make_rng("dropout"), self.p_uncond, (batch,))
    return jnp.where(use_null[:, None], null[None, :], projected)

  @nn.compact
  def __call__(self, x, t, condition: Optional[jax.Array] = None, train: bool = False):
    b, hgt, wid, _ = x.shape
    if self.num_classes > 0 and self.condition_dim > 0:
      raise ValueError("UNet conditions on labels (num_classes) or on vectors (condition_dim), not both")
    factor = 2 ** (len(self.channel_mult) - 1)
    if hgt % factor or wid % factor:
      raise ValueError(f"UNet with {len(self.channel_mult)} levels needs H, W divisible by {factor}; "
                       f"got {hgt}x{wid}: shorten model.channel_mult")
    block = lambda f: TimeResBlock(f, self.dropout, self.num_groups, self.dtype)
    attend = lambda h: SelfAttention(self.num_heads, self.num_groups)(h)
    emb_dim = 4 * self.base_channels
    emb = timestep_embedding(t, self.base_channels)
    emb = nn.Dense(emb_dim)(nn.silu(nn.Dense(emb_dim)(emb)))       # [B, E]
    if self.num_classes > 0:
      emb = emb + nn.Embed(self.num_classes + 1, emb_dim)(self._label(condition, b, train))
    elif self.condition_dim > 0:
      emb = emb + self._condition_embedding(condition, b, train, emb_dim)

    h = Conv(self.base_channels, (3, 3), padding="SAME", dtype=self.dtype)(x)
    skips = [h]
    for level, mult in enumerate(self.channel_mult):               # down: [H] -> [H / 2^level]
      for _ in range(self.num_res_blocks):
        h = block(self.base_channels * mult)(h, emb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attend(h)
        skips.append(h)
      if level < len(self.channel_mult) - 1:
        h = Conv(h.shape[-1], (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype)(h)
        skips.append(h)

    h = block(h.shape[-1])(h, emb, train)                          # middle
    if self.mid_attention:
      h = attend(h)
    h = block(h.shape[-1])(h, emb, train)

    for level, mult in reversed(list(enumerate(self.channel_mult))):  # up, with skips
      for _ in range(self.num_res_blocks + 1):
        h = block(self.base_channels * mult)(jnp.concatenate([h, skips.pop()], axis=-1), emb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attend(h)
      if level > 0:
        h = Conv(h.shape[-1], (3, 3), padding="SAME", dtype=self.dtype, upsample=2)(h)   # nearest x2, conv
    assert not skips
    h = nn.silu(_group_norm(h, self.num_groups))
    return Conv(self.out_channels, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros, dtype=self.dtype)(h)
