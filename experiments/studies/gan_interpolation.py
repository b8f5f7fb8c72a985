"""GAN-INT's picture: a grid interpolating the condition between two captions (or labels).

  python -m experiments.studies.gan_interpolation --workdir=runs/gan --a=0 --b=9            # labels
  python -m experiments.studies.gan_interpolation --workdir=runs/gan_caption \\
      --a="a small dark sandal" --b="a large light bag" --out=interp.png              # captions

Row r holds one z (the same along the row), column j the condition
c_j = (1 - t_j) c_a + t_j c_b with t_j = j / (cols - 1): c is the one-hot label
(label model) or the frozen text encoder's caption embedding (caption model),
the space in which GAN-INT trained G on halfway points (t = 0.5). Images are
the EMA generator's means, floor(K G(z, c)). Writes a PNG (default
WORKDIR/interpolation.png).
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from genfam.evaluation import images
from genfam.families import gan
from genfam.families.auxiliary import clip
from genfam.loop import train
from genfam.settings import config_files


def condition(model, spec, text: str):
  """'7' -> label 7's condition; any other text -> the caption's (caption model only). -> [1, E]"""
  if text.isdigit():
    return model.labels_to_condition(np.array([int(text)]))
  if model.tokens_to_condition is None:
    raise SystemExit(f"{text!r} is not a label and this GAN is label-conditioned: pass label numbers")
  return model.tokens_to_condition(clip.prompt_tokens(spec, [text]))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--config", default="gan", help="used when WORKDIR has no config.json")
  parser.add_argument("--a", required=True, help="a label number or a caption")
  parser.add_argument("--b", required=True, help="a label number or a caption")
  parser.add_argument("--rows", type=int, default=6)
  parser.add_argument("--cols", type=int, default=9)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  config = config_files.saved(args.workdir, args.config)
  run = train.Run(config, args.workdir)
  state, _, meta = run.restore_or_fail()
  params = run.family.eval_params(state)
  model = gan.build(config, run.spec, **run.family_inputs)
  c_a, c_b = condition(model, run.spec, args.a), condition(model, run.spec, args.b)      # [1, E] each
  t = jnp.linspace(0.0, 1.0, args.cols)[None, :, None]                                 # [1, cols, 1]
  c = ((1.0 - t) * c_a[:, None] + t * c_b[:, None])                                     # [1, cols, E]
  c = jnp.broadcast_to(c, (args.rows, args.cols, c.shape[-1])).reshape(args.rows * args.cols, -1)
  z = jax.random.normal(jax.random.PRNGKey(args.seed), (args.rows, 1, model.latent_dim))
  z = jnp.broadcast_to(z, (args.rows, args.cols, model.latent_dim)).reshape(args.rows * args.cols, -1)
  pictures = gan.to_pixels(model.generator.apply({"params": params}, z, c), run.spec.num_bins)
  out = args.out or os.path.join(args.workdir, "interpolation.png")
  images.save_grid(out, np.asarray(pictures), run.spec.num_bins, columns=args.cols)
  print(f"step {int(meta['step'])}: {args.rows} x {args.cols} interpolation {args.a!r} -> {args.b!r}: {out}")


if __name__ == "__main__":
  main()
