"""A grid of dataset images with their captions, to see what the captions say.

  python -m experiments.studies.caption_grid --config=configs/glow.py --out=captions.png
  python -m experiments.studies.caption_grid --dataset=digits --split=test --out=captions_digits.png
  python -m experiments.studies.caption_grid --dataset=fashion_mnist --epoch=1 --num=48 \
      --out=experiments/results/captions_fashion_mnist.png

Each cell shows one example (drawn at random from the split by --seed) with
the caption the training loader gives it in --epoch for loader seed --seed
(`captions.example_caption`), and under it, in grey, all of its measured
attributes (a caption names only some of them).
"""
import argparse
import os
import textwrap

import numpy as np

from genfam.data import captions, pipeline, sources
from genfam.settings import config_files


def captioned_dataset(data_config):
  """-> (spec, {split: CaptionedSource}); thresholds stored with the prepared dataset."""
  if hasattr(sources, "load"):
    loaded = sources.load(data_config)
    spec, srcs, directory = loaded.spec, loaded.sources, loaded.provenance.prepared_dir
  else:
    spec, srcs = sources.data_sources(data_config)
    directory = os.path.join(data_config.data_dir or sources.default_data_dir(), f"captions_{spec.name}")
  return pipeline.captioned(spec, srcs, directory)


def draw(spec, source, indices, seed: int, epoch: int, path: str, columns: int) -> str:
  """Writes a PNG of `source`'s examples `indices` with their captions; returns path."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = int(np.ceil(len(indices) / columns))
  fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 3.0 * rows), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for ax, i in zip(axes.ravel(), indices):
    record = source[int(i)]
    image = np.asarray(record["image"]).astype(np.float64) / (spec.num_bins - 1)
    tokens = captions.example_caption(spec, seed, int(i), epoch, record["label"], record["attributes"])
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title("\n".join(textwrap.wrap(captions.decode(tokens, spec), 24)), fontsize=8)
    every = " ".join(v[int(a)] for v, a in zip(spec.attribute_values, record["attributes"]))
    ax.text(0.5, -0.04, every, transform=ax.transAxes, ha="center", va="top", fontsize=7, color="0.45")
  fig.suptitle(f"{spec.name}: captions (seed {seed}, epoch {epoch}); grey: all measured attributes", fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.1 / rows))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/glow.py", help="config file[:variant]; its data section is read")
  parser.add_argument("--dataset", default="", help="overrides config.data.name")
  parser.add_argument("--split", default="train", choices=("train", "test"))
  parser.add_argument("--num", type=int, default=36)
  parser.add_argument("--columns", type=int, default=6)
  parser.add_argument("--seed", type=int, default=0, help="picks the examples and phrases their captions")
  parser.add_argument("--epoch", type=int, default=0)
  parser.add_argument("--out", default="captions.png")
  args = parser.parse_args(argv)
  path, _, variant = args.config.partition(":")
  config = config_files.load(path, variant)
  if args.dataset:
    config.data.name = args.dataset
  spec, srcs = captioned_dataset(config.data)
  source = srcs[args.split]
  indices = np.sort(np.random.default_rng(args.seed).choice(len(source), min(args.num, len(source)), replace=False))
  print(draw(spec, source, indices, args.seed, args.epoch, args.out, args.columns))


if __name__ == "__main__":
  main()
