"""The sections every config shares; each `configs/<family>.py` starts here.

Configs are read at the edge (main, train, registry, a family's `make`);
modules below them take plain values.
"""
import ml_collections

from genfam.cpu import host_memory


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.family = ""                 # registry name: 'flow', 'vae', 'diffusion', ...
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"  # 'fashion_mnist', 'digits', 'mnist', 'cifar10'
  c.data.batch_size = 64         # global batch; must divide by the device count
  c.data.source_dir = ""         # local raw files (Fashion-MNIST IDX); "" = env var / Debian path
  c.data.data_dir = ""           # where TFDS keeps prepared array_record files; "" = default
  c.data.allow_download = True   # let TFDS download standard datasets (needs network)
  c.data.validation_examples = 0  # hold the train split's last N examples out of training, as 'validation'

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 1000
  c.train.log_every = 50
  c.train.eval_every = 0          # 0: evaluate only at the end
  c.train.eval_examples = 1000    # test examples for evaluations during training (0 = all)
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.sample_every = 0        # 0: sample only at the end
  c.train.max_consecutive_nonfinite = 20
  c.train.max_train_seconds = 0.0  # stop once the run (all sessions) has trained this long (periodic evals and
                                   # sample grids not counted: cadence.TrainingClock); 0 = no limit
  c.train.progress = True         # a progress bar on stderr
  c.train.clock = "wall"          # what train.max_train_seconds and train_seconds count: "wall" clock, or "cpu" (this
                                  # process's CPU seconds, all threads: on one pinned core, a budget a busy machine
                                  # does not shrink; genfam/loop/cadence.py)
  c.train.final_eval = True       # False: end after the final checkpoint, without the test evaluation and the sample
                                  # grid (judge it later with --mode=eval, as experiments/comparison/ladder.py does)
  c.train.cpu_devices = 0         # CPU backend only: data-parallel devices per process (0: one per usable core,
                                  # lowered to divide the batch into parts of >= 8 rows); set by genfam.main
                                  # before JAX starts (genfam/cpu/xla_cpu.py); GPU and TPU are untouched
  c.train.xla_cpu_flags = ""      # XLA:CPU flags genfam.main puts before XLA_FLAGS (yours win) before JAX starts;
                                  # ones this jaxlib does not know are left out with a warning
  # Host memory: glibc keeps up to this many MiB of freed memory mapped (mallopt's mmap and trim
  # thresholds), so each step reuses the last step's buffers instead of faulting fresh pages in
  # (genfam/cpu/host_memory.py); 0: glibc's defaults.
  c.train.malloc_retain_mib = host_memory.DEFAULT_MIB
  # genfam.main restarts once with glibc's huge-page tunable (host_memory.restart_for):
  # on where a step's buffers exceed 64 MiB per device (configs/ddpm.py, configs/realnvp.py, configs/igpt.py).
  c.train.huge_pages = False
  # "jemalloc": genfam.main restarts once with jemalloc preloaded, which keeps freed buffers of every
  # size for the next step, in huge pages (the two keys above then do nothing); where the library is
  # missing, glibc's malloc with them. "glibc": glibc's malloc.
  c.train.malloc = host_memory.DEFAULT_MALLOC

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.optim.decay_steps = 0
  c.optim.clip_norm = 100.0
  c.optim.weight_decay = 0.0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.ema_decay = 0.0         # 0 disables EMA

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 256
  c.eval.num_examples = 0         # 0 = the whole test split
  c.eval.num_draws = 1            # independent noise draws (dequantization, posterior, t) per example
  c.eval.extra_num_examples = 0   # test examples for a family's extra bounds (e.g. IWAE-1000); 0 = num_examples
  c.eval.every_seconds = 0.0      # >0: also evaluate (train.eval_examples) each time training time passes a multiple
  # Sample quality at the final evaluation (genfam/evaluation/sample_quality.py): FID / KID on the domain
  # classifier's features with the real-vs-real floor, text agreement, sampling speed. Off by default.
  c.eval.sample_quality = False
  c.eval.classifier_workdir = ""  # a configs/classifier.py workdir (required with sample_quality)
  c.eval.clip_workdir = ""        # a configs/clip.py workdir: image-text cosine of caption models ("" = none)
  c.eval.num_samples = 10000      # N samples; FID / KID against the first min(N, test) test images
  c.eval.reference_images = 0     # FID / KID reference: the first R test images (0: min(N, test split))
  c.eval.condition_images = 0     # conditional samples take the labels / captions of the first C test images in
                                  # turn; text agreement's real ceiling on the same C (0: the reference's)
  c.eval.kid_stats_images = 10000  # KID's features are standardized with the mean and std of these first train images
  c.eval.sample_batch_size = 500  # samples per sampler call
  c.eval.clock = "wall"           # what the sampling speed counts: "wall" clock, or "cpu" (this process's CPU time:
                                  # a pinned process's core-seconds, unchanged by other work on the machine)

  c.sample = ml_collections.ConfigDict()
  c.sample.num = 64
  c.sample.conditional = False    # condition on labels 0..C-1 (families that support it)

  c.model = ml_collections.ConfigDict()
  c.model.dtype = "float32"       # product dtype of the networks' convolutions / matmuls: 'float32' or
                                  # 'bfloat16' (mixed precision: parameters, optimizer state, norms,
                                  # log-dets and likelihood arithmetic stay float32: genfam/cpu/matmul_conv.py)
  return c
