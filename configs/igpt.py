"""Image-GPT on Fashion-MNIST: a decoder-only transformer over the 784 pixels.

Run:
  python -m genfam.main --config=configs/igpt.py --workdir=runs/igpt
  python -m genfam.main --config=configs/igpt.py --mode=eval --workdir=runs/igpt
  python -m genfam.main --config=configs/igpt.py --mode=sample --workdir=runs/igpt \
      --config.sample.temperature=0.9 --config.sample.top_k=0
  python -m genfam.main --config=configs/igpt.py:smoke --workdir=/tmp/igpt-smoke   # seconds, digits
  python -m genfam.main --config=configs/igpt.py --config.model.class_conditional=True \
      --config.sample.conditional=True --workdir=runs/igpt_label        # -log p(x | label), rows by label
Likelihood: exact, -log2 p(x_i | x_<i, prefix) averaged over the D = 784
pixels (prefix tokens not counted); a label or caption model says
'conditional on label / caption' in its report.

Model: pixels in raster order (channels interleaved per pixel) are tokens over
the K grey levels; a learned start embedding (no grey level) stands before
x_0; learned position embeddings; pre-LayerNorm blocks with causal attention
(in blocks of model.query_block query rows; 0: one jax.nn.dot_product_attention
call); final LayerNorm; a zero-initialised K-way head (an untrained model gives
exactly log2 K = 8 bits/dim). Width 128, 2 blocks, 4 heads, MLP ratio 4: 0.56M
parameters (the winner of the race below; `--config.model.depth=4` is issue 9's
minGPT reference architecture, 0.96M).
Prefix: model.condition ('none' / 'label' / 'caption'; class_conditional=True is
'label'); caption padding (token 0) is masked out of attention. Sampling:
key-value-cached lax.scan (default) or the uncached reference, temperature, top-k (0 = off).

Reaches 3.267 +- 0.029 bits/dim (exact, first 1000 test images) at depth 4 after a
70-minute training budget: 449 steps of 16 images, 1.7 images/s on a 2-core
CPU shared with up to ten other jobs, peak RSS 2.8 GiB; evaluating the 1000
images took 17 min (the samples already look like clothes):
  python -m genfam.main --config=configs/igpt.py --config.model.depth=4 --config.train.num_steps=4000 \
      --config.train.max_train_seconds=4200 --config.train.checkpoint_every=200 \
      --config.eval.num_examples=1000 --workdir=runs/igpt
Rerun with a larger max_train_seconds to continue it.

Architecture race (equal budget: 600 s of training each on one core, `taskset -c 1 nice -n 10`,
the other core running a diffusion run; test bits/dim on the same first 1000 test images):
  python -m experiments.sweep --config=configs/igpt.py --root=runs/sweep_igpt --cores=1 \
    --common=train.num_steps=1000000,train.max_train_seconds=600,eval.num_examples=1000,train.checkpoint_every=2000,sample.num=16 \
    --variant=w128d4:model.depth=4 --variant=w64d4:model.width=64,model.depth=4 --variant=w128d2:
  | variant | parameters | steps x 16 | images/s (one core) | bits/dim (exact) |
  | width 128, depth 4 (minGPT's) | 0.96M | 127 | 3.44 | 4.063 +- 0.035 |
  | width 64, depth 4             | 0.28M | 197 | 5.34 | 3.823 +- 0.033 |
  | width 128, depth 2 (default)  | 0.56M | 219 | 5.91 | 3.579 +- 0.031 |
Depth 2 at width 128 wins by 0.24 bits/dim over width 64 and 0.48 over depth 4
on the same images (the +- are each mean's own standard error; the paired
differences are far larger than they). At 127-219 steps every variant was still
in or just past the 200-step learning-rate warm-up, so the top two were
continued to 1200 s each (the same command with train.max_train_seconds=1200 and
only those two variants; they resume):
  | width 128, depth 4 | 253 steps | 3.44 images/s | 3.559 +- 0.031 | peak RSS 2.7 GiB |
  | width 128, depth 2 | 430 steps | 5.71 images/s | 3.231 +- 0.029 | peak RSS 1.9 GiB |
Depth 2 still leads, by 0.33 bits/dim, and after 20 minutes on one core it is
already below the depth-4 run's 3.267 after 70 minutes on a loaded machine
(above). experiments/results/igpt_race/ has both stages' tables and grids.

Measured at depth 4 (2-core AVX-512 CPU):
- Training speed against PyTorch, quiet, two devices (the default), three alternating rounds
  (`XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m experiments.benchmark_speed
  --configs=igpt@model.depth=4@model.query_block=56,igpt@model.depth=4@model.query_block=196 --steps=5`
  against `experiments/peer_speed.py --peers=igpt --steps=5`, karpathy/minGPT's gpt-micro, the same
  network with dropout 0; README "Training speed", experiments/results/throughput/peers/igpt_heads_major_*):
    query_block=196 (default)  11.6, 11.7, 11.8 images/s (9.1-9.3k tokens/s), 129.0 GFLOP/step
    query_block=56             9.6, 10.2, 10.0 images/s, 123.6 GFLOP/step
    before heads-major blocks   7.8, 7.9, 7.8 images/s (query_block=56, commit 3d13b54)
    minGPT                     7.5, 7.0, 7.1 images/s, 122.1 GFLOP/step
  so 1.55-1.67x minGPT in images/s and 1.63-1.77x per matmul FLOP (93.6-95.4 vs 53.6-57.4
  GFLOP/s, both counted as PyTorch's FlopCounterMode counts), each side with its own host memory;
  with train.huge_pages (now on) and minGPT given the same host-memory settings, 13.5-13.8
  against 12.3-12.6 images/s: 1.07-1.12x (README "Page faults between steps"); with jemalloc on
  both sides (train.malloc, now the default) 13.3, 13.2 against 11.8, 11.5: 1.12-1.15x (README
  "jemalloc instead of glibc's malloc"). Blocked attention
  (`nets.transformer.blocked_causal_attention`) skips the keys above the diagonal blocks and
  runs heads-major; query_block=0 (one jax.nn.dot_product_attention call, 151.7 GFLOP/step)
  ran 6.0 images/s in the same session. model.dtype=bfloat16 is slower (10.2 against 11.3
  images/s at 7797dbf, experiments/results/throughput/peers/heads_major_all_2dev.json): XLA's
  bf16 weight-gradient products, which contract over the long B x T axis, run at 124-170
  GFLOP/s here against 185-230 in fp32.
  Issue 9's reference (minGPT at 2.4-3.0k tokens/s) matches minGPT with its default
  dropout of 0.1 (3.1k tokens/s here).
- The loop itself, 20 steps: 3.4 images/s (2680 tokens/s) at load ~11-12, peak
  RSS 2.72 GiB (/usr/bin/time -v: 2856384 kB; results.json 2789 MiB) with the
  eval batch of 32 and 4 samples:
    python -m genfam.main --config=configs/igpt.py --config.model.depth=4 --workdir=runs/igpt_rss \
        --config.train.num_steps=20 --config.eval.num_examples=64 --config.sample.num=4
  Test bits/dim of those 20 steps on 64 images: 7.867 (8.0 at step 0). Evaluation
  ran 64 test images in 7.1 s: the whole test split would take ~18 min at that load.
- Sampling of a trained model, quiet machine, in the comparison
  (`experiments.compare`'s sampling-speed step: `python -m experiments.igpt_sampling_speed
  --workdir=runs/compare/igpt --num=16 --uncached_num=2`): cached 2.81 images/s,
  uncached 0.062 (16.0 s per image): 45x (reference: 12x).
- Sampling, `python -m experiments.igpt_sampling_speed --num=16 --uncached_num=1`
  (fresh model with a random head, load ~10.7): cached 16 images in 35.7 s
  (0.449 images/s, 2.23 s/image); uncached 1 image in 54.3 s (0.018 images/s);
  cached/uncached = 24.4x (reference: 12x), the first image identical from both.
"""
from genfam.settings.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.family = "igpt"

  c.model.width = 128               # residual stream
  c.model.depth = 2                 # transformer blocks (won the equal-budget race of the docstring)
  c.model.num_heads = 4
  c.model.mlp_ratio = 4             # MLP hidden = mlp_ratio * width
  c.model.dropout = 0.0             # on embeddings and residual branches (training only)
  c.model.dtype = "float32"         # matmul / attention / cache dtype: 'float32' or 'bfloat16'
  c.model.query_block = 196         # causal attention in blocks of 196 query rows, skipping keys above the
                                    # diagonal blocks (CPU: 1.9x one call); 0 = one call (fused kernels on GPU)
  c.model.condition = "none"        # prefix: 'none', 'label' or 'caption' (batch['caption'] tokens)
  c.model.class_conditional = False  # True = condition 'label' (a label token in front)
  c.model.caption_dropout = 0.1     # caption models: P(training caption emptied); the empty caption = p(x)

  c.data.batch_size = 16
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 200
  c.optim.clip_norm = 1.0
  c.optim.ema_decay = 0.995

  c.train.num_steps = 4000
  c.train.log_every = 50
  c.train.checkpoint_every = 250
  # Its step's buffers exceed what glibc keeps; used on glibc's malloc only
  # (train.malloc="glibc", or jemalloc not installed): README, "Page faults between steps".
  c.train.huge_pages = True
  c.train.eval_examples = 500

  c.eval.batch_size = 32            # attention over 784 positions: [32, 4, 784, 784] floats per layer
  c.eval.num_examples = 0           # the whole test split

  c.sample.num = 64
  c.sample.conditional = False      # label models: labels 0..C-1 in columns
  c.sample.temperature = 1.0        # logits / T
  c.sample.top_k = 0                # keep the k most likely grey levels; 0 = off (the model as trained)
  c.sample.sampler = "cached"       # 'cached' (key-value cache) or 'uncached' (full forward per pixel)

  if arg == "smoke":
    _smoke(c)
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/igpt.py; use 'smoke' or nothing")
  return c


def _smoke(c):
  """A tiny image-GPT on scikit-learn digits (8x8, 17 grey levels: 64 tokens)."""
  c.data.name = "digits"
  c.data.batch_size = 16
  c.model.width = 32
  c.model.depth = 2
  c.model.num_heads = 2
  c.model.query_block = 24          # 65 positions in 3 blocks: the blocked attention runs end to end
  c.optim.warmup_steps = 2
  c.train.num_steps = 4
  c.train.checkpoint_every = 2
  c.train.log_every = 1
  c.train.eval_examples = 32
  c.eval.num_examples = 32
  c.eval.batch_size = 32
  c.sample.num = 16
