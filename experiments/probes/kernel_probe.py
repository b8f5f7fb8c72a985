"""Which kernels reach this CPU's matrix units: GEMM and 3x3 convolutions, fp32 vs bfloat16, through XLA.

  python -m experiments.probes.kernel_probe                         # the default shapes
  python -m experiments.probes.kernel_probe --batch=64 --size=28 --channels=64,128 --out=probe.json
  python -m experiments.probes.kernel_probe --phases          # lax's dilated-input forms vs cpu.phase_conv's
  python -m experiments.probes.kernel_probe --pointwise --batch=32   # 1x1 convolutions: lax vs one matmul
  python -m experiments.probes.kernel_probe --conv_grads --batch=32  # a 3x3 convolution's forward, input and kernel gradient
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m experiments.probes.kernel_probe --allreduce
  python -m experiments.probes.kernel_probe --dot_forms       # a dense layer's three products, fp32 vs bf16
  python -m experiments.probes.kernel_probe --attention_forms # the blocked attention's batched products, fp32 vs bf16

For each shape it times, forward and backward (value_and_grad of a sum, so
the two gradient convolutions are included; 3x the forward FLOPs):
- gemm:      an N x N @ N x N product (2 N^3 FLOPs forward);
- conv:      lax.conv_general_dilated, 3x3, SAME, NHWC / HWIO (2 * B*H*W * 9*Cin*Cout FLOPs);
- conv_im2col: the same convolution as one matmul of its 3x3 patches
             [B*H*W, 9*Cin] @ [9*Cin, Cout] (genfam.cpu.matmul_conv.conv_as_matmul);
each in float32 and in bfloat16 (inputs and weights cast, products
accumulated in float32: preferred_element_type), and reports GFLOP/s of the
best of --reps timed calls after a compiling one. A kernel that uses the AMX
units shows a bfloat16 rate several times its float32 rate.

With --phases it times instead, forward + backward at batch --batch in float32, the
networks' layers whose lax form convolves a zero-dilated input, against
`genfam.cpu.phase_conv` (the form the networks use on the CPU): the GAN generator's
4x4 stride-2 transposed convolutions (lax.conv_transpose vs phases) and the 4x4 / 3x3
stride-2 convolutions of its discriminator, the U-Net and the VAE (JAX's input gradient
vs the phase one), at the default configs' shapes. With --pointwise it times Glow's 1x1
convolutions as lax convolutions against `genfam.cpu.matmul_conv.pointwise_conv` (one
matmul, the form `Conv` uses on the CPU). With --conv_grads it times the U-Net's 3x3
stride-1 convolutions (lax's, float32) in three separate pieces: the forward product, the
input gradient and the kernel gradient, each jitted alone, so that a slow library kernel
shows which piece it is (run it under each XLA_FLAGS setting to compare XLA:CPU's
YNNPACK and Eigen paths).

With --dot_forms it times a dense layer's three products apart, each jitted alone, in
float32 and bfloat16 (bf16 operands and output, as a Flax layer with dtype=bfloat16 computes
them): the forward x @ w, the input gradient g @ w^T and the kernel gradient x^T @ g, the
last both as the dot_general JAX's transpose rule emits (contracting the operands' major
dimension M) and as genfam's einsum over M split into 8 chunks (cpu.dense_products), which XLA lowers
to a physical transpose of both operands and one canonical [K, M] @ [M, N] product. XLA:CPU
hands a product to YNNPACK (whose bf16 kernels use AMX) only in that canonical form; it
runs the others in float32 (measured on an AMX Xeon, JAX 0.11.2:
experiments/results/throughput/amx/). Shapes: a 2048^3 product and the image-GPT's dense
layers (M = batch 16 x 784 tokens). A product that reaches the AMX units runs several
times faster in bfloat16 than in float32.

With --attention_forms it does the same for the image-GPT's blocked attention (one block of
196 query rows against 196 and 784 keys, 4 heads of 32, batch 16): the three kinds of batched
product its forward and backward pass compute (logits q k^T and g v^T contracting both operands'
last dimension; p v and g k, canonical; the key and value gradients g^T q and p^T g contracting
both operands' first non-batch dimension), the two non-canonical kinds also as an einsum over
the contracted dimension split in chunks, and reports for each the operand types of the dot XLA
compiled: 'f32 x f32' for a bfloat16 product means XLA converted it and runs it in float32.

With --allreduce it times data parallelism's gradient all-reduce across this process's
devices: a psum (jax.shard_map) of a tuple of --arrays float32 arrays against one array
of the same total size (--floats; the defaults are Glow's gradient: 168 parameter arrays,
152,420 floats). XLA combines a step's gradient all-reduces into one over a tuple, and
this shows what its CPU runtime pays per operand of that tuple.
"""
import argparse
import json
import os
import re
import time

import jax
import jax.numpy as jnp
from jax import lax

from genfam.cpu import dense_products, matmul_conv, phase_conv
from genfam.cpu.conv_transpose import conv_transpose


def best_seconds(fn, *args, reps: int) -> float:
  """Fastest of `reps` calls of jitted fn after one compiling call."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def conv_xla(x, w, dtype):  # [B, H, W, Cin], [3, 3, Cin, Cout] -> [B, H, W, Cout] float32
  return lax.conv_general_dilated(x.astype(dtype), w.astype(dtype), (1, 1), "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  preferred_element_type=jnp.float32)


def conv_im2col(x, w, dtype):  # [B, H, W, Cin], [3, 3, Cin, Cout] -> [B, H, W, Cout] float32
  return matmul_conv.conv_as_matmul(x.astype(dtype), w.astype(dtype), (1, 1), "SAME")


def forward_backward(f, dtype):
  """jit(value_and_grad) of sum(f(x, w)) with respect to both inputs."""
  return jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(f(x, w, dtype)), argnums=(0, 1)))


def probe(batch: int, size: int, channels: int, gemm_n: int, reps: int) -> list[dict]:
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  x = jax.random.normal(keys[0], (batch, size, size, channels), jnp.float32)
  w = jax.random.normal(keys[1], (3, 3, channels, channels), jnp.float32) * 0.05
  a = jax.random.normal(keys[2], (gemm_n, gemm_n), jnp.float32)
  bm = jax.random.normal(keys[3], (gemm_n, gemm_n), jnp.float32)
  rows = []
  conv_flops = 3 * 2 * batch * size * size * 9 * channels * channels     # forward + two gradients
  for dtype in (jnp.float32, jnp.bfloat16):
    for name, f in (("conv", conv_xla), ("conv_im2col", conv_im2col)):
      s = best_seconds(forward_backward(f, dtype), x, w, reps=reps)
      rows.append({"kernel": name, "dtype": jnp.dtype(dtype).name, "shape": f"{batch}x{size}x{size}x{channels}",
                   "seconds": s, "gflops_per_s": conv_flops / s / 1e9})
    gemm = jax.jit(jax.value_and_grad(lambda a, b, d=dtype: jnp.sum(
        jnp.dot(a.astype(d), b.astype(d), preferred_element_type=jnp.float32)), argnums=(0, 1)))
    s = best_seconds(gemm, a, bm, reps=reps)
    rows.append({"kernel": "gemm", "dtype": jnp.dtype(dtype).name, "shape": f"{gemm_n}^3", "seconds": s,
                 "gflops_per_s": 3 * 2 * gemm_n ** 3 / s / 1e9})
  return rows


# (name, input [H, Cin], kernel, Cout, transposed) at the default configs' shapes
PHASE_LAYERS = (("gan generator 7->14", 7, 64, 4, 64, True), ("gan generator 14->28", 14, 64, 4, 32, True),
                ("gan discriminator 28->14", 28, 32, 4, 64, False), ("gan discriminator 14->7", 14, 64, 4, 128, False),
                ("unet / vae downsample 28->14", 28, 32, 3, 32, False), ("unet downsample 14->7", 14, 64, 3, 64, False))


def time_pairs(layers, reps: int) -> list[dict]:
  """Forward + backward ms (sum of sin of the output, both gradients) of each layer's two
  forms: layers = [(name, shape text, x, w, lax form, other form)] -> rows."""
  rows = []
  for name, shape, x, w, lax_form, other in layers:
    row = {"layer": name, "shape": shape}
    for label, f in (("lax_ms", lax_form), ("other_ms", other)):
      fb = jax.jit(jax.value_and_grad(lambda x, w, f=f: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1)))
      row[label] = 1e3 * best_seconds(fb, x, w, reps=reps)
    rows.append(row)
  return rows


def probe_phases(batch: int, reps: int) -> list[dict]:
  """Each PHASE_LAYERS layer, lax's form vs the phase form (float32)."""
  dims = ("NHWC", "HWIO", "NHWC")
  layers = []
  for name, size, cin, taps, cout, transposed in PHASE_LAYERS:
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    x = jax.random.normal(keys[0], (batch, size, size, cin), jnp.float32)
    w = jax.random.normal(keys[1], (taps, taps, cin, cout), jnp.float32) * 0.05
    if transposed:
      lax_form = lambda x, w: lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=dims)
      phases = lambda x, w: conv_transpose(x, w, (2, 2), "SAME")
    else:
      lax_form = lambda x, w: lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=dims)
      phases = lambda x, w: phase_conv.strided_conv(x, w, (2, 2), "SAME")
    layers.append((name, f"{batch}x{size}x{size}x{cin} -> {cout}, {taps}x{taps} stride 2", x, w, lax_form, phases))
  return time_pairs(layers, reps)


# (name, H, channels) of the 1x1 convolutions in Glow's coupling networks (default width 64; 128)
POINTWISE_LAYERS = (("glow coupling 14x14, width 64", 14, 64), ("glow coupling 7x7, width 64", 7, 64),
                    ("glow coupling 14x14, width 128", 14, 128), ("glow coupling 7x7, width 128", 7, 128))


def probe_pointwise(batch: int, reps: int) -> list[dict]:
  """Each POINTWISE_LAYERS 1x1 convolution, lax's convolution vs `matmul_conv.pointwise_conv` (float32)."""
  layers = []
  for name, size, c in POINTWISE_LAYERS:
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    x = jax.nn.relu(jax.random.normal(keys[0], (batch, size, size, c), jnp.float32))
    w = jax.random.normal(keys[1], (1, 1, c, c), jnp.float32) * 0.05
    layers.append((name, f"{batch}x{size}x{size}x{c} -> {c}, 1x1", x, w,
                   lambda x, w: conv_xla(x, w, jnp.float32), matmul_conv.pointwise_conv))
  return time_pairs(layers, reps)


# (name, H, Cin, Cout) of the 3x3 stride-1 convolutions of configs/ddpm.py's U-Net (32/64/64 channels;
# the decoder's first convolution at each level reads the skip concatenated on channels)
CONV_GRAD_LAYERS = (("U-Net 28x28, 32 -> 32", 28, 32, 32), ("U-Net decoder 28x28, 64 -> 32", 28, 64, 32),
                    ("U-Net 14x14, 64 -> 64", 14, 64, 64), ("U-Net 7x7, 64 -> 64", 7, 64, 64))


def probe_conv_grads(batch: int, reps: int) -> list[dict]:
  """Each CONV_GRAD_LAYERS convolution's forward product, input gradient and kernel gradient
  (each its own jitted call, float32), in ms and GFLOP/s (2 B H W 9 Cin Cout each)."""
  rows = []
  for name, size, cin, cout in CONV_GRAD_LAYERS:
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (batch, size, size, cin), jnp.float32)       # [B, H, W, Cin]
    w = jax.random.normal(keys[1], (3, 3, cin, cout), jnp.float32) * 0.05        # [3, 3, Cin, Cout]
    dy = jax.random.normal(keys[2], (batch, size, size, cout), jnp.float32)     # [B, H, W, Cout]
    conv = lambda x, w: conv_xla(x, w, jnp.float32)  # noqa: E731
    pieces = {"forward": (jax.jit(conv), (x, w)),
              "input_grad": (jax.jit(lambda w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0]), (w, dy)),
              "kernel_grad": (jax.jit(lambda x, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]), (x, dy))}
    flops = 2 * batch * size * size * 9 * cin * cout
    row = {"layer": name, "shape": f"{batch}x{size}x{size}x{cin} -> {cout}, 3x3"}
    for piece, (fn, args) in pieces.items():
      seconds = best_seconds(fn, *args, reps=reps)
      row[f"{piece}_ms"], row[f"{piece}_gflops_per_s"] = 1e3 * seconds, flops / seconds / 1e9
    rows.append(row)
  return rows


# (name, M, K, N): x [M, K] @ w [K, N]
DOT_SHAPES = (("square 2048", 2048, 2048, 2048), ("image-GPT qkv, 12544 x 128 -> 384", 12544, 128, 384),
              ("image-GPT fc1, 12544 x 128 -> 512", 12544, 128, 512),
              ("image-GPT fc2, 12544 x 512 -> 128", 12544, 512, 128))


# form: (f(x, w, g), the two of x [M, K], w [K, N], g [M, N] it reads)
DOT_FORMS = {"forward": (lambda x, w, g: jnp.dot(x, w), (0, 1)),
             "input_grad": (lambda x, w, g: lax.dot_general(g, w, (((1,), (1,)), ((), ()))), (2, 1)),   # g w^T
             "kernel_grad": (lambda x, w, g: lax.dot_general(x, g, (((0,), (0,)), ((), ()))), (0, 2)),  # x^T g
             # genfam's form (cpu.dense_products), returned in the operands' dtype like the others
             "kernel_grad_chunked": (lambda x, w, g: dense_products.kernel_grad(x, g, x.dtype), (0, 2))}


def probe_dot_forms(reps: int, shapes=DOT_SHAPES) -> list[dict]:
  """Each DOT_SHAPES product's forward, input gradient and kernel gradient (2 M K N FLOPs each),
  float32 and bfloat16, the kernel gradient also as a chunked einsum (a canonical product of
  transposed operands): ms and GFLOP/s."""
  forms = DOT_FORMS
  rows = []
  for name, m, k, n in shapes:
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    full = (jax.random.normal(keys[0], (m, k)), jax.random.normal(keys[1], (k, n)) / k ** 0.5,
            jax.random.normal(keys[2], (m, n)))                   # x [M, K], w [K, N], g [M, N]
    for dtype in (jnp.float32, jnp.bfloat16):
      row = {"shape": name, "m": m, "k": k, "n": n, "dtype": jnp.dtype(dtype).name}
      arrays = [a.astype(dtype) for a in full]
      for form, (f, used) in forms.items():
        fn = jax.jit(lambda a, b, f=f, used=used: f(*[(a if i == used[0] else b) if i in used else None
                                                      for i in range(3)]))
        seconds = best_seconds(fn, arrays[used[0]], arrays[used[1]], reps=reps)
        row[f"{form}_ms"], row[f"{form}_gflops_per_s"] = 1e3 * seconds, 2 * m * k * n / seconds / 1e9
      rows.append(row)
  return rows


# (name, B, H, Tq, Tk, Dh): one block of query rows of the image-GPT's blocked attention
# (batch 16, 4 heads of 32, query_block 196: the first block's 196 keys and the last one's 784)
ATTENTION_SHAPES = (("image-GPT first block, 196 keys", 16, 4, 196, 196, 32),
                    ("image-GPT last block, 784 keys", 16, 4, 196, 784, 32))


def _accumulate(a):  # float32 accumulation (float64 stays float64)
  return jnp.promote_types(a.dtype, jnp.float32)


def _split(x, axis: int, chunks: int):  # [..., n, ...] -> [..., chunks, n / chunks, ...]
  return x.reshape(x.shape[:axis] + (chunks, x.shape[axis] // chunks) + x.shape[axis + 1:])


def batched_nt(a, b):  # a [B, H, M, D], b [B, H, N, D] -> a b^T [B, H, M, N], accumulated
  """a b^T, both operands contracting their last dimension, as JAX writes it."""
  return jnp.einsum("bhmd,bhnd->bhmn", a, b, preferred_element_type=_accumulate(a))


def batched_nt_chunked(a, b):  # a [B, H, M, D], b [B, H, N, D] -> a b^T [B, H, M, N], accumulated
  """a b^T as an einsum over D split in 2 chunks (1 for odd D): XLA then lowers it to a
  transpose of b and one canonical product."""
  c = 2 if a.shape[3] % 2 == 0 else 1
  return jnp.einsum("bhmcd,bhncd->bhmn", _split(a, 3, c), _split(b, 3, c), preferred_element_type=_accumulate(a))


def batched_nn(a, b):  # a [B, H, M, K], b [B, H, K, N] -> a b [B, H, M, N], accumulated (canonical)
  return jnp.einsum("bhmk,bhkn->bhmn", a, b, preferred_element_type=_accumulate(a))


def batched_tn(a, b):  # a [B, H, K, M], b [B, H, K, N] -> a^T b [B, H, M, N], accumulated
  """a^T b, both operands contracting their first non-batch dimension, as JAX writes it."""
  return jnp.einsum("bhkm,bhkn->bhmn", a, b, preferred_element_type=_accumulate(a))


def batched_tn_chunked(a, b):  # a [B, H, K, M], b [B, H, K, N] -> a^T b [B, H, M, N], accumulated
  """a^T b as an einsum over K split in the first of 4, 2, 1 chunks that divides it: XLA then
  lowers it to a transpose of a and one canonical product (as cpu.dense_products' kernel gradient)."""
  c = next(c for c in (4, 2, 1) if a.shape[2] % c == 0)
  return jnp.einsum("bhckm,bhckn->bhmn", _split(a, 2, c), _split(b, 2, c), preferred_element_type=_accumulate(a))


# form: (f(a, b) -> [B, H, ., .] accumulated in float32, and the operand shapes it takes, from
# (Tq, Tk, Dh)). The attention's forward and backward pass use three kinds of batched product:
# a b^T contracting both operands' last dimension (the logits q k^T and the probabilities'
# gradient g v^T), the canonical a b (probabilities times values, and the queries' gradient),
# and a^T b contracting both operands' first non-batch dimension (the keys' and values'
# gradients). Each non-canonical kind is timed as JAX writes it and chunked.
ATTENTION_FORMS = {
    "scores": (batched_nt, lambda tq, tk, d: ((tq, d), (tk, d))),
    "scores_chunked": (batched_nt_chunked, lambda tq, tk, d: ((tq, d), (tk, d))),
    "mix": (batched_nn, lambda tq, tk, d: ((tq, tk), (tk, d))),
    "transposed": (batched_tn, lambda tq, tk, d: ((tq, tk), (tq, d))),
    "transposed_chunked": (batched_tn_chunked, lambda tq, tk, d: ((tq, tk), (tq, d))),
}


def dot_operand_dtypes(hlo_text: str) -> list[str]:
  """The element types of every dot's two operands in optimized HLO text ('bf16 x bf16', ...)."""
  types = {}
  for line in hlo_text.splitlines():
    m = re.match(r"^\s*(?:ROOT )?%(\S+) = (\w+)\[", line)
    if m:
      types[m.group(1)] = m.group(2)
  return [f"{types[a]} x {types[b]}" for a, b in re.findall(r" dot\(%([^,\s]+), %([^,\s)]+)\)", hlo_text)]


def probe_attention_forms(reps: int, shapes=ATTENTION_SHAPES) -> list[dict]:
  """The blocked attention's batched products (ATTENTION_FORMS, 2 B H Tq Tk Dh FLOPs each) at
  ATTENTION_SHAPES, float32 and bfloat16, each jitted alone: ms, GFLOP/s and the operand types
  of the compiled dot (a bf16 product XLA:CPU runs in float32 shows 'f32 x f32')."""
  rows = []
  for name, b, h, tq, tk, d in shapes:
    for dtype in (jnp.float32, jnp.bfloat16):
      row = {"shape": name, "b": b, "h": h, "tq": tq, "tk": tk, "d": d, "dtype": jnp.dtype(dtype).name}
      for form, (f, operand_shapes) in ATTENTION_FORMS.items():
        keys = jax.random.split(jax.random.PRNGKey(0), 2)
        args = [jax.random.normal(key, (b, h) + s).astype(dtype) for key, s in zip(keys, operand_shapes(tq, tk, d))]
        fn = jax.jit(lambda x, y, f=f: f(x, y).astype(x.dtype))
        seconds = best_seconds(fn, *args, reps=reps)
        row[f"{form}_ms"], row[f"{form}_gflops_per_s"] = 1e3 * seconds, 2 * b * h * tq * tk * d / seconds / 1e9
        row[f"{form}_dot_operands"] = dot_operand_dtypes(fn.lower(*args).compile().as_text())
      rows.append(row)
  return rows


def write_rows(path: str, rows: list[dict]):
  """The probe's rows as JSON at `path` (nothing when empty), with the platform and XLA_FLAGS."""
  if path:
    with open(path, "w") as f:
      json.dump({"device": jax.devices()[0].platform, "xla_flags": os.environ.get("XLA_FLAGS", ""), "rows": rows},
                f, indent=2)


def probe_allreduce(num_arrays: int, num_floats: int, reps: int) -> dict:
  """Milliseconds of a psum over every device of `num_arrays` float32 arrays against one
  array, `num_floats` floats per device either way (the best of `reps` calls)."""
  devices = jax.devices()
  if len(devices) < 2:
    raise SystemExit("error: --allreduce needs 2 or more devices: run it under "
                     "XLA_FLAGS=--xla_force_host_platform_device_count=2")
  mesh = jax.sharding.Mesh(devices, ("d",))
  spec = jax.sharding.PartitionSpec("d")
  size = num_floats // num_arrays
  many = [jnp.ones((len(devices), size), jnp.float32) for _ in range(num_arrays)]
  one = jnp.ones((len(devices), size * num_arrays), jnp.float32)
  psum = lambda *xs: jax.lax.psum(xs, "d")  # noqa: E731
  tuple_fn = jax.jit(jax.shard_map(psum, mesh=mesh, in_specs=(spec,) * num_arrays, out_specs=(spec,) * num_arrays))
  one_fn = jax.jit(jax.shard_map(psum, mesh=mesh, in_specs=(spec,), out_specs=(spec,)))
  return {"devices": len(devices), "arrays": num_arrays, "floats_per_device": size * num_arrays,
          "tuple_ms": 1e3 * best_seconds(tuple_fn, *many, reps=reps),
          "one_array_ms": 1e3 * best_seconds(one_fn, one, reps=reps)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--size", type=int, default=28)
  parser.add_argument("--channels", default="64,128")
  parser.add_argument("--gemm_n", type=int, default=2048)
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--out", default="")
  parser.add_argument("--phases", action="store_true", help="time the dilated-input layers, lax vs phases")
  parser.add_argument("--pointwise", action="store_true", help="time Glow's 1x1 convolutions, lax vs a matmul")
  parser.add_argument("--conv_grads", action="store_true",
                      help="time the U-Net's 3x3 convolutions' forward, input gradient and kernel gradient apart")
  parser.add_argument("--dot_forms", action="store_true",
                      help="time a dense layer's forward, input and kernel gradient apart, fp32 vs bf16")
  parser.add_argument("--attention_forms", action="store_true",
                      help="time the blocked attention's batched products apart, fp32 vs bf16")
  parser.add_argument("--allreduce", action="store_true",
                      help="time a psum of --arrays arrays against one array of --floats floats in all")
  parser.add_argument("--arrays", type=int, default=168)
  parser.add_argument("--floats", type=int, default=152420)
  args = parser.parse_args()
  if args.allreduce:
    r = probe_allreduce(args.arrays, args.floats, max(args.reps, 20))
    print(f"psum over {r['devices']} {jax.devices()[0].platform} devices, {r['floats_per_device']} float32 per device: "
          f"{r['arrays']} arrays {r['tuple_ms']:.2f} ms, one array {r['one_array_ms']:.2f} ms")
    if args.out:
      with open(args.out, "w") as f:
        json.dump(r, f, indent=2)
    return
  if args.dot_forms:
    rows = probe_dot_forms(args.reps)
    print(f"{jax.devices()[0].platform}; XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r}; best of {args.reps}; "
          "ms (GFLOP/s)")
    forms = ("forward", "input_grad", "kernel_grad", "kernel_grad_chunked")
    print("| shape | dtype | " + " | ".join(forms) + " |\n|---|---|" + "---:|" * len(forms))
    for r in rows:
      print(f"| {r['shape']} | {r['dtype']} | " + " | ".join(
          f"{r[f + '_ms']:.2f} ({r[f + '_gflops_per_s']:.0f})" for f in forms) + " |")
    write_rows(args.out, rows)
    return
  if args.attention_forms:
    rows = probe_attention_forms(args.reps)
    print(f"{jax.devices()[0].platform}; XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r}; best of {args.reps}; "
          "ms (GFLOP/s), [dot operand types as compiled]")
    print("| shape | dtype | " + " | ".join(ATTENTION_FORMS) + " |\n|---|---|" + "---:|" * len(ATTENTION_FORMS))
    for r in rows:
      print(f"| {r['shape']} | {r['dtype']} | " + " | ".join(
          f"{r[f + '_ms']:.2f} ({r[f + '_gflops_per_s']:.0f}) [{', '.join(r[f + '_dot_operands'])}]"
          for f in ATTENTION_FORMS) + " |")
    write_rows(args.out, rows)
    return
  if args.conv_grads:
    rows = probe_conv_grads(args.batch, args.reps)
    print(f"{jax.devices()[0].platform}; XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r}; float32, best of {args.reps}")
    print("| layer | shape | forward ms (GFLOP/s) | input gradient | kernel gradient |\n|---|---|---:|---:|---:|")
    for r in rows:
      print(f"| {r['layer']} | {r['shape']} | " + " | ".join(
          f"{r[p + '_ms']:.1f} ({r[p + '_gflops_per_s']:.0f})" for p in ("forward", "input_grad", "kernel_grad")) + " |")
    write_rows(args.out, rows)
    return
  if args.phases or args.pointwise:
    rows = probe_phases(args.batch, args.reps) if args.phases else probe_pointwise(args.batch, args.reps)
    other = "phases" if args.phases else "matmul"
    print(f"{jax.devices()[0].platform}; forward + backward, float32, best of {args.reps}")
    print(f"| layer | shape | lax ms | {other} ms | speed-up |\n|---|---|---:|---:|---:|")
    for r in rows:
      print(f"| {r['layer']} | {r['shape']} | {r['lax_ms']:.1f} | {r['other_ms']:.1f} | {r['lax_ms'] / r['other_ms']:.2f}x |")
    if args.out:
      with open(args.out, "w") as f:
        json.dump({"device": jax.devices()[0].platform, "rows": rows}, f, indent=2)
    return
  rows = []
  for c in [int(c) for c in args.channels.split(",")]:
    rows += probe(args.batch, args.size, c, args.gemm_n, args.reps)
  print(f"{jax.devices()[0].platform}, {jax.device_count()} device(s); forward + backward, best of {args.reps}")
  print("| kernel | dtype | shape | ms | GFLOP/s |")
  print("|---|---|---|---:|---:|")
  seen = set()
  for r in rows:
    if (r["kernel"], r["dtype"], r["shape"]) in seen:
      continue
    seen.add((r["kernel"], r["dtype"], r["shape"]))
    print(f"| {r['kernel']} | {r['dtype']} | {r['shape']} | {1e3 * r['seconds']:.1f} | {r['gflops_per_s']:.0f} |")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"device": jax.devices()[0].platform, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main()
