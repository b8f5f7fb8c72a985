"""The domain classifier: a small CNN predicting the class and each measured attribute.

  python -m genfam.main --config=configs/classifier.py --workdir=runs/classifier
  python -m genfam.main --config=configs/classifier.py --workdir=runs/classifier --mode=eval
  python -m genfam.main --config=configs/classifier.py:smoke --workdir=/tmp/classifier-smoke  # tiny, digits

Not generative: it reports test accuracy per head (class, brightness, size,
width, texture) with the chance level of a uniform guess, where a generative
family reports bits/dim. Its penultimate features (`exports['features']`,
[B, 128]) are the comparison's FID/KID features; a family or evaluation names
its workdir and restores it with `genfam.frozen.load_frozen(workdir, 'classifier')`.

Reaches, with this default config (4000 steps of 128, 8.5 epochs), on the 10000
Fashion-MNIST test images, mean ± standard error (chance of a uniform guess):
  class 0.9048 ± 0.0029 (0.1000); brightness 0.9597 ± 0.0020 (0.3333);
  size 0.9623 ± 0.0019 (0.3333); width 0.9869 ± 0.0011 (0.5000);
  texture 0.9588 ± 0.0020 (0.5000)
36 min of training (2150 s, 241 images/s) pinned to one core of the 2-core CPU
that up to 6 other training jobs shared at the time (load ~9-12; its jitted
update step, timed by itself on the same core afterwards at load ~4, ran
515 images/s: ~17 min for the run), test evaluation 1.3 s, peak RSS 0.9 GiB:
  taskset -c 1 nice -n 10 python -m genfam.main --config=configs/classifier.py --workdir=runs/classifier
(run with --config.train.progress=False). An earlier variant with 2x2
average pooling and 2500 steps reached class accuracy 0.884: hence max
pooling and 4000 steps.
"""
from genfam.settings import config_base


def get_config(arg=None):
  c = config_base.base_config()
  c.family = "classifier"
  c.data.batch_size = 128

  c.model.channels = (32, 64)       # conv stages (3x3 convs, then 2x2 max pool): 28 -> 14 -> 7
  c.model.convs_per_stage = 1       # one 3x3 conv per stage: a second one at 28x28 cost 3x the time for little
  c.model.features = 128            # penultimate features F (the FID/KID features)
  c.model.attribute_heads = True    # one head per measured attribute beside the class head

  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.optim.decay_steps = 4000        # cosine to 0
  c.optim.clip_norm = 0.0
  c.optim.weight_decay = 1e-4

  c.train.num_steps = 4000          # ~8.5 epochs of Fashion-MNIST
  c.train.log_every = 100
  c.train.checkpoint_every = 500

  c.eval.batch_size = 250           # 10000 test images = 40 batches, none padded
  if arg == "smoke":
    c.data.name = "digits"
    c.data.batch_size = 32
    c.model.channels = (8, 16)
    c.model.convs_per_stage = 1
    c.model.features = 32
    c.optim.warmup_steps = 1
    c.optim.decay_steps = 0
    c.train.num_steps = 4
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.eval_every = 2
    c.train.eval_examples = 32
    c.train.progress = False
    c.eval.batch_size = 32
    c.eval.num_examples = 64
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/classifier.py; use '' or 'smoke'")
  return c
