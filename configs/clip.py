"""CLIP, small: a transformer text encoder and a conv image encoder trained with
the symmetric InfoNCE loss and a learned temperature on our captions.

  python -m genfam.main --config=configs/clip.py --workdir=runs/clip
  python -m genfam.main --config=configs/clip.py --workdir=runs/clip --mode=eval
  python -m genfam.main --config=configs/clip.py:smoke --workdir=/tmp/clip-smoke   # tiny, digits

Not generative: it reports, on the test split, zero-shot class accuracy from
the prompts "a photo of a <class>", zero-shot accuracy of each attribute from
"a photo of a <value> <class>" prompts (averaged over classes), and
caption-to-image and image-to-caption recall@1 and @5 within galleries of
eval.batch_size test examples, each beside its chance level. Text-conditional
families name its workdir (e.g. model.text_encoder_workdir) and restore its
frozen encoders with `genfam.frozen.load_frozen(workdir, 'clip')`.

Measured (a SHORT run: 600 steps of 256 pairs, 2.6 epochs, the cosine schedule
shortened to match; not the default 2000 steps), on the 10000 Fashion-MNIST
test images in 40 galleries of 250, mean ± standard error (chance):
  zero-shot class accuracy       0.8915 ± 0.0031 (0.1000)
  caption-to-image recall@1 / @5 0.2076 ± 0.0041 (0.0040) / 0.6317 ± 0.0048 (0.0200)
  image-to-caption recall@1 / @5 0.2267 ± 0.0042 (0.0040) / 0.6474 ± 0.0048 (0.0200)
  zero-shot attribute accuracy   brightness 0.9255 (0.3333), size 0.9238 (0.3333),
                                 width 0.9733 (0.5000), texture 0.9282 (0.5000)
19 min of training (1150 s, 140 images/s) pinned to one core of the 2-core
CPU that 6 other training jobs shared at the time (load ~9-12), peak RSS
1.3 GiB; the learned temperature 1/s fell from 0.070 to 0.058 (s 14.3 -> 17.2):
  taskset -c 1 nice -n 10 python -m genfam.main --config=configs/clip.py \
      --config.train.num_steps=600 --config.optim.decay_steps=600 \
      --config.train.checkpoint_every=200 --workdir=runs/clip
(run with --config.train.progress=False, left out above). Recall@1 is far
below zero-shot accuracy, presumably because a caption names only a class and
up to four coarse attributes, so a gallery of 250 holds many images that fit
it about as well; only captions of identical tokens count as equally right
(`genfam.families.clip.recall_at_k`).
"""
from genfam.settings import config_base


def get_config(arg=None):
  c = config_base.base_config()
  c.family = "clip"
  c.data.batch_size = 256           # B pairs per InfoNCE step: B - 1 negatives for each

  c.model.embed_dim = 64            # E, the joint embedding
  c.model.text_width = 64
  c.model.text_layers = 2
  c.model.text_heads = 4
  c.model.channels = (32, 64)
  c.model.convs_per_stage = 1       # one 3x3 conv per stage: a second one at 28x28 cost 3x the time for little
  c.model.image_features = 128
  c.model.init_temperature = 0.07   # tau at the start (CLIP's); learned as log(1 / tau), clipped at 1 / 100

  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.optim.decay_steps = 2000
  c.optim.clip_norm = 1.0
  c.optim.weight_decay = 1e-4

  c.train.num_steps = 2000
  c.train.log_every = 100
  c.train.checkpoint_every = 500

  c.eval.batch_size = 250           # the retrieval gallery: 10000 test pairs = 40 galleries of 250
  if arg == "smoke":
    c.data.name = "digits"
    c.data.batch_size = 32
    c.model.embed_dim = 16
    c.model.text_width = 16
    c.model.text_layers = 1
    c.model.text_heads = 2
    c.model.channels = (8, 16)
    c.model.convs_per_stage = 1
    c.model.image_features = 32
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
    raise ValueError(f"unknown variant {arg!r} of configs/clip.py; use '' or 'smoke'")
  return c
