"""A small transformer text encoder over caption tokens (Flax Linen).

Tokens are int32 ids of a closed vocabulary, right-padded with id 0. Padding
is masked out of attention (no token attends to a padding position) and out
of the pooled output (the mean over the real tokens). Attention is
bidirectional: the encoder reads the whole caption, it generates nothing.
Modules take plain arguments (ints), never configs.
"""
import flax.linen as nn
import jax.numpy as jnp

PAD_ID = 0


class EncoderBlock(nn.Module):
  """Pre-norm transformer block: x + MHA(LN(x)); x + MLP(LN(x))."""
  width: int
  num_heads: int
  mlp_ratio: int = 4

  @nn.compact
  def __call__(self, x, mask):  # x [B, L, W], mask [B, 1, L, L] bool -> [B, L, W]
    h = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.width)(h, h, mask=mask)
    h = nn.LayerNorm()(x)
    h = nn.Dense(self.width)(nn.gelu(nn.Dense(self.mlp_ratio * self.width)(h)))
    return x + h


class TextEncoder(nn.Module):
  """tokens -> token + learned position embeddings -> blocks -> LN -> masked mean -> [B, width].

  vocab_size: V, ids 0 .. V-1 (0 is padding); max_length: L, the caption length.
  A caption of padding only (no real token) pools to zeros.
  """
  vocab_size: int
  max_length: int
  width: int = 64
  num_layers: int = 2
  num_heads: int = 4

  @nn.compact
  def __call__(self, tokens):  # [B, L] int32 -> [B, width]
    real = tokens != PAD_ID                                                   # [B, L]
    x = nn.Embed(self.vocab_size, self.width)(tokens)                        # [B, L, W]
    position = self.param("position", nn.initializers.normal(0.02), (self.max_length, self.width))
    x = x + position[None, :tokens.shape[1]]
    # Keys that are padding are masked for every query; padding queries see the
    # real keys (their outputs are dropped by the pooling below).
    mask = nn.make_attention_mask(jnp.ones_like(real), real)                  # [B, 1, L, L]
    for _ in range(self.num_layers):
      x = EncoderBlock(self.width, self.num_heads)(x, mask)
    x = nn.LayerNorm()(x)
    weights = real.astype(x.dtype)[..., None]                                 # [B, L, 1]
    return (x * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)  # [B, W]
