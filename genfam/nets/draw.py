"""AlignDRAW's networks (Flax Linen): DRAW's attention, a caption encoder and the recurrent core.

Attention (DRAW, Gregor et al. 2015). An N x N grid of Gaussian filters over an H x W
image, in pixel coordinates a in {0 .. W-1}, b in {0 .. H-1}:
    mu_X^i = g_X + (i - (N - 1) / 2) delta,          i in {0 .. N-1}
    F_X[i, a] = exp(-(a - mu_X^i)^2 / (2 sigma^2)) / Z_X^i,   sum_a F_X[i, a] = 1
(F_Y likewise over rows), with the centre (g_X, g_Y), stride delta, variance sigma^2 and
intensity gamma from five numbers (g~_X, g~_Y, log sigma^2, log delta~, log gamma) a network emits:
    g_X = (W + 1)/2 (g~_X + 1) - 1,   g_Y = (H + 1)/2 (g~_Y + 1) - 1,
    delta = (max(H, W) - 1) / (N - 1) * delta~
(the paper's 1-based formulas, shifted to 0-based pixels: g~ = 0 is the image's centre).
    read(x)  = gamma F_Y x F_X^T           [B, H, W, C] -> [B, N, N, C]
    write(w) = (1 / gamma) F_Y^T w F_X     [B, N, N, K] -> [B, H, W, K]

Alignment (AlignDRAW, Mansimov et al. 2016). A bidirectional LSTM over the caption's words
gives states h^lang_k; at step t the generator's previous state h^gen_{t-1} scores each word,
    e_k = v^T tanh(U h^lang_k + W h^gen_{t-1} + b),   alpha_k = softmax_k over the real words,
and the sentence context is s_t = sum_k alpha_k h^lang_k. Padding (token 0) gets weight 0; a
caption of padding only gives s_t = 0.

The recurrent core (one step of `AlignDRAW.infer_step`, t = 1 .. T):
    x^_t      = x - loc(c_{t-1})                                  the error image
    r_t       = [read(x), read(x^_t)]            (window from h^gen_{t-1})
    h^enc_t   = LSTM^enc(h^enc_{t-1}, [r_t, h^gen_{t-1}])
    q(z_t)    = N(mu(h^enc_t), diag sigma(h^enc_t)^2)            z_t = mu + sigma eps_t
    p(z_t)    = N(mu'(h^gen_{t-1}), diag sigma'(h^gen_{t-1})^2)  (h^gen_0 = 0: a learned constant prior)
    s_t       = align(h^gen_{t-1}, h^lang)
    h^gen_t   = LSTM^gen(h^gen_{t-1}, [z_t, s_t])
    c_t       = c_{t-1} + write(h^gen_t)       (window and patch from h^gen_t; c_0 learned)
The canvas c_T [B, H, W, C, P] holds the P parameters per stored pixel of the pixel decoder
(`genfam.nets.vae_nets.PixelDecoder`); loc(c) is that decoder's location (the mixture's mean
location), clipped to the bin-centre range [-1, 1]. `generate_step` is the same step without
the encoder: z_t from the prior. Modules take plain arguments (ints, tuples), never configs.
"""
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

PAD_ID = 0
WINDOW_PARAMS = 5          # g~_X, g~_Y, log sigma^2, log delta~, log gamma
_FILTER_EPS = 1e-8         # DRAW's floor on a filter's normaliser (a centre far off the image)
_MASKED_SCORE = -1e9       # alignment score of a padding word: exp() underflows to exactly 0


# ----------------------------------------------------------------------------
# Attention: plain functions of arrays.
# ----------------------------------------------------------------------------


def filterbank(centre, stride, variance, size: int, n: int):  # [B] x 3 -> [B, n, size]
  """F[b, i, a] = exp(-(a - mu_i)^2 / (2 var)) / Z_i, mu_i = centre + (i - (n-1)/2) stride,
  each row normalised over the size pixels a (Z_i floored at 1e-8, as DRAW's)."""
  offsets = jnp.arange(n, dtype=centre.dtype) - 0.5 * (n - 1)                     # [n]
  mu = centre[:, None] + offsets[None] * stride[:, None]                           # [B, n]
  a = jnp.arange(size, dtype=centre.dtype)                                         # [size]
  f = jnp.exp(-jnp.square(a[None, None] - mu[..., None]) / (2.0 * variance[:, None, None]))
  return f / jnp.maximum(jnp.sum(f, axis=-1, keepdims=True), _FILTER_EPS)


class Window(NamedTuple):
  rows: jax.Array       # F_Y [B, N, H]
  columns: jax.Array    # F_X [B, N, W]
  gamma: jax.Array      # intensity [B]


def attention_window(raw, height: int, width: int, n: int) -> Window:  # [B, 5] -> Window
  """DRAW's window from (g~_X, g~_Y, log sigma^2, log delta~, log gamma) (module docstring)."""
  gx_raw, gy_raw, log_var, log_stride, log_gamma = [raw[:, k] for k in range(WINDOW_PARAMS)]
  gx = 0.5 * (width + 1) * (gx_raw + 1.0) - 1.0
  gy = 0.5 * (height + 1) * (gy_raw + 1.0) - 1.0
  stride = (max(height, width) - 1) / max(n - 1, 1) * jnp.exp(log_stride)
  variance = jnp.exp(log_var)
  return Window(filterbank(gy, stride, variance, height, n), filterbank(gx, stride, variance, width, n),
                jnp.exp(log_gamma))


def read(image, window: Window):  # [B, H, W, C] -> [B, N, N, C]
  """gamma F_Y x F_X^T per channel."""
  rows = jnp.einsum("bih,bhwc->biwc", window.rows, image)
  return window.gamma[:, None, None, None] * jnp.einsum("biwc,bjw->bijc", rows, window.columns)


def write(patch, window: Window):  # [B, N, N, K] -> [B, H, W, K]
  """(1 / gamma) F_Y^T w F_X per channel."""
  rows = jnp.einsum("bih,bijk->bhjk", window.rows, patch)
  return jnp.einsum("bhjk,bjw->bhwk", rows, window.columns) / window.gamma[:, None, None, None]


def alignment_weights(scores, mask):  # [B, L] float, [B, L] bool -> [B, L]
  """softmax of the scores over the real words (mask True); padding gets exactly 0, and a
  caption of padding only gets all-zero weights."""
  weights = jax.nn.softmax(jnp.where(mask, scores, _MASKED_SCORE), axis=-1)
  return jnp.where(jnp.any(mask, axis=-1, keepdims=True), weights * mask, 0.0)


def canvas_location(canvas, kind: str, num_mixtures: int):  # [..., P] -> [...] in [-1, 1]
  """The pixel decoder's location on the bin-centre scale: the mean of a 'logistic' or
  'gaussian' decoder, sum_m pi_m mu_m of a 'logistic_mixture' [logits | means | log-scales]."""
  if kind == "logistic_mixture":
    m = num_mixtures
    loc = jnp.sum(jax.nn.softmax(canvas[..., :m], axis=-1) * canvas[..., m:2 * m], axis=-1)
  else:
    loc = canvas[..., 0]
  return jnp.clip(loc, -1.0, 1.0)


# ----------------------------------------------------------------------------
# The model.
# ----------------------------------------------------------------------------


class Caption(NamedTuple):
  values: jax.Array     # h^lang [B, L, 2 * caption_hidden]
  keys: jax.Array       # U h^lang [B, L, align_features]
  mask: jax.Array       # bool [B, L], True on real words


class AlignDRAW(nn.Module):
  """The caption encoder, alignment and DRAW core; call a method with `apply(..., method=)`.

  image_shape (H, W, C) as stored; params_per_pixel P of the pixel decoder `pixel_kind` (with
  num_mixtures); vocab_size V (0 = padding); latent_dim Z per step; read_size / write_size the
  read and write grids' N.
  """
  image_shape: tuple
  params_per_pixel: int
  pixel_kind: str
  num_mixtures: int
  vocab_size: int
  latent_dim: int = 16
  encoder_hidden: int = 256
  generator_hidden: int = 256
  read_size: int = 2
  write_size: int = 5
  caption_embed: int = 32
  caption_hidden: int = 64
  align_features: int = 64
  param_dtype: Any = jnp.float32   # float64 in the tests' exact checks (the LSTMs' carries follow it)

  def setup(self):
    height, width, channels = self.image_shape
    dense = lambda n, **kw: nn.Dense(n, param_dtype=self.param_dtype, **kw)  # noqa: E731
    cell = lambda n: nn.OptimizedLSTMCell(n, param_dtype=self.param_dtype)  # noqa: E731
    self.embed = nn.Embed(self.vocab_size, self.caption_embed, param_dtype=self.param_dtype)
    self.words = nn.Bidirectional(nn.RNN(cell(self.caption_hidden)),
                                  nn.RNN(cell(self.caption_hidden), reverse=True, keep_order=True))
    self.align_keys = dense(self.align_features, use_bias=False)          # U
    self.align_query = dense(self.align_features)                         # W, b
    self.align_score = dense(1, use_bias=False)                           # v
    self.encoder_cell = cell(self.encoder_hidden)
    self.generator_cell = cell(self.generator_hidden)
    self.posterior_head = dense(2 * self.latent_dim)
    # zero kernel: p(z_t) = N(0, I) at initialisation, learning its dependence on h^gen_{t-1}
    self.prior_head = dense(2 * self.latent_dim, kernel_init=nn.initializers.zeros)
    self.read_head = dense(WINDOW_PARAMS)
    self.write_head = dense(WINDOW_PARAMS)
    self.patch_head = dense(self.write_size ** 2 * channels * self.params_per_pixel)
    self.canvas0 = self.param("canvas0", nn.initializers.zeros, (height, width, channels, self.params_per_pixel),
                              self.param_dtype)

  def encode_caption(self, tokens) -> Caption:  # int32 [B, L] -> Caption
    """h^lang from the bidirectional LSTM; each direction reads only the real words (the
    backward one starts at the last real word: seq_lengths), so padding changes nothing."""
    mask = tokens != PAD_ID
    lengths = jnp.sum(mask, axis=-1).astype(jnp.int32)                               # [B]
    values = self.words(self.embed(tokens), seq_lengths=lengths)                     # [B, L, 2 Hl]
    return Caption(values, self.align_keys(values), mask)

  def initial_state(self, batch: int) -> dict:
    """h^enc_0 = h^gen_0 = 0 (and the cells' memories), c_0 the learned canvas; in param_dtype."""
    zeros = lambda n: (jnp.zeros((batch, n), self.param_dtype),) * 2  # noqa: E731 (memory, hidden)
    canvas = jnp.broadcast_to(self.canvas0.astype(self.param_dtype), (batch, *self.canvas0.shape))
    return {"encoder": zeros(self.encoder_hidden), "generator": zeros(self.generator_hidden), "canvas": canvas}

  def align(self, h_gen, caption: Caption):  # [B, G] -> s [B, 2 Hl], alpha [B, L]
    scores = self.align_score(jnp.tanh(caption.keys + self.align_query(h_gen)[:, None]))[..., 0]   # [B, L]
    alpha = alignment_weights(scores, caption.mask)
    return jnp.einsum("bl,bld->bd", alpha, caption.values), alpha

  def prior(self, h_gen):  # [B, G] -> mean, log_scale [B, Z]
    out = self.prior_head(h_gen)
    return out[:, :self.latent_dim], out[:, self.latent_dim:]

  def _window(self, head, h, n: int) -> Window:
    height, width, _ = self.image_shape
    return attention_window(head(h), height, width, n)

  def _generate(self, state: dict, z, caption: Caption) -> dict:
    """h^gen_t = LSTM^gen(h^gen_{t-1}, [z_t, s_t]); c_t = c_{t-1} + write(h^gen_t)."""
    batch = z.shape[0]
    context, _ = self.align(state["generator"][1], caption)
    generator, h = self.generator_cell(state["generator"], jnp.concatenate([z, context], axis=-1))
    height, width, channels = self.image_shape
    patch = self.patch_head(h).reshape(batch, self.write_size, self.write_size, -1)   # [B, Nw, Nw, C P]
    update = write(patch, self._window(self.write_head, h, self.write_size))                           # [B, H, W, C P]
    canvas = state["canvas"] + update.reshape(batch, height, width, channels, self.params_per_pixel)
    return dict(state, generator=generator, canvas=canvas)

  def infer_step(self, state: dict, x, eps, caption: Caption):
    """One step with the encoder: x [B, H, W, C] bin centres in [-1, 1], eps [B, Z] ~ N(0, I)
    -> (state, (q_mean, q_log_scale, p_mean, p_log_scale) each [B, Z]), z_t = q_mean + q_scale eps."""
    h_gen = state["generator"][1]
    error = x - canvas_location(state["canvas"], self.pixel_kind, self.num_mixtures)
    window = self._window(self.read_head, h_gen, self.read_size)
    glimpse = jnp.concatenate([read(x, window), read(error, window)], axis=-1).reshape(x.shape[0], -1)
    encoder, h_enc = self.encoder_cell(state["encoder"], jnp.concatenate([glimpse, h_gen], axis=-1))
    q = self.posterior_head(h_enc)
    q_mean, q_log_scale = q[:, :self.latent_dim], q[:, self.latent_dim:]
    p_mean, p_log_scale = self.prior(h_gen)
    z = q_mean + jnp.exp(q_log_scale) * eps
    state = self._generate(dict(state, encoder=encoder), z, caption)
    return state, (q_mean, q_log_scale, p_mean, p_log_scale)

  def generate_step(self, state: dict, eps, caption: Caption, temperature: float = 1.0):
    """One step from the prior: z_t = p_mean + temperature p_scale eps, eps [B, Z] -> state."""
    p_mean, p_log_scale = self.prior(state["generator"][1])
    return self._generate(state, p_mean + temperature * jnp.exp(p_log_scale) * eps, caption)

  def __call__(self, x, tokens):  # creates every parameter: [B, H, W, C], [B, L] -> canvas [B, H, W, C, P]
    caption = self.encode_caption(tokens)
    state = self.initial_state(x.shape[0])
    eps = jnp.zeros((x.shape[0], self.latent_dim), x.dtype)
    state, _ = self.infer_step(state, x, eps, caption)
    return state["canvas"]


def infer(model: AlignDRAW, params, x, tokens, eps):
  """All T steps with the encoder, eps [T, B, Z] the posterior noise:
  x [B, H, W, C] in [-1, 1], tokens int32 [B, L] -> (canvas c_T [B, H, W, C, P],
  (q_mean, q_log_scale, p_mean, p_log_scale) each [T, B, Z])."""
  variables = {"params": params}
  caption = model.apply(variables, tokens, method=AlignDRAW.encode_caption)
  state = model.apply(variables, x.shape[0], method=AlignDRAW.initial_state)

  def step(state, e):
    return model.apply(variables, state, x, e, caption, method=AlignDRAW.infer_step)

  state, stats = jax.lax.scan(step, state, eps)
  return state["canvas"], stats


def generate(model: AlignDRAW, params, tokens, eps, temperature: float = 1.0):
  """All T steps from the prior, eps [T, B, Z]: tokens int32 [B, L] -> canvas c_T [B, H, W, C, P]."""
  variables = {"params": params}
  caption = model.apply(variables, tokens, method=AlignDRAW.encode_caption)
  state = model.apply(variables, tokens.shape[0], method=AlignDRAW.initial_state)

  def step(state, e):
    return model.apply(variables, state, e, caption, temperature, method=AlignDRAW.generate_step), None

  state, _ = jax.lax.scan(step, state, eps)
  return state["canvas"]
