"""Caption interpolation for every family conditioned on a caption embedding: a grid from one sentence to another.

  python -m experiments.studies.caption_interpolation --workdir=runs/compare/ddpm_caption \\
      --a="a small dark sandal" --b="a large light bag" --out=interp.png
  python -m experiments.studies.caption_interpolation --workdir=runs/compare/gan_caption --a=... --b=... --path=slerp

Column j of the grid is conditioned on the embedding e_j on the path from e_a = t(a) to e_b = t(b),
t the frozen CLIP text encoder the model was trained with (its model.text_encoder_workdir), at
s_j = j / (cols - 1):
  linear  e_j = (1 - s_j) e_a + s_j e_b    (the space GAN-INT trained the GAN on, at s = 1/2)
  slerp   e_j = sin((1 - s_j) W) / sin W e_a + sin(s_j W) / sin W e_b, W the angle between them
          (stays on the unit sphere where the encoder's embeddings live)
Row r keeps one noise along the row: each column is one call of the family's own sampler for `rows`
images with the same key, so a GAN row shares its z and a diffusion row its x_T and step noises
(DDIM with eta = 0: the same deterministic map from x_T). The family is built as the loop builds it,
except that its text encoder reads the path's embeddings (`path_encoder`), so the columns s = 0 and
s = 1 are exactly the family's samples for the sentences a and b. Families that embed the caption
tokens themselves (the image-GPT's token prefix) have no embedding to interpolate and are refused.
Writes a PNG (default WORKDIR/caption_interpolation.png). The GAN's label interpolation:
experiments/studies/gan_interpolation.py.
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from genfam import registry
from genfam.errors import GenfamError
from genfam.evaluation import images

PATHS = ("linear", "slerp")


def embedding_path(e_a, e_b, cols: int, path: str = "linear"):
  """[E], [E] -> [cols, E]: the embeddings at s = 0, 1/(cols-1), .., 1 on the `path` (module docstring)."""
  if path not in PATHS:
    raise GenfamError(f"unknown --path {path!r}; use one of {PATHS}")
  e_a, e_b = jnp.asarray(e_a, jnp.float32), jnp.asarray(e_b, jnp.float32)
  s = jnp.linspace(0.0, 1.0, cols)[:, None]                                       # [cols, 1]
  if path == "linear":
    return (1.0 - s) * e_a + s * e_b
  cos = jnp.dot(e_a, e_b) / (jnp.linalg.norm(e_a) * jnp.linalg.norm(e_b))
  omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
  if float(jnp.sin(omega)) < 1e-6:                                                 # (anti)parallel: the line
    return (1.0 - s) * e_a + s * e_b
  return (jnp.sin((1.0 - s) * omega) * e_a + jnp.sin(s * omega) * e_b) / jnp.sin(omega)


def path_encoder(table):
  """An `encode_text` for the family that reads the path's embeddings: tokens int32 [N, L] whose
  first token is a column index j -> table[j] [N, E]. (The family only ever passes it tokens.)"""
  table = jnp.asarray(table, jnp.float32)
  return lambda tokens: table[jnp.clip(jnp.asarray(tokens, jnp.int32)[:, 0], 0, len(table) - 1)]


def column_tokens(j: int, rows: int, caption_length: int) -> np.ndarray:
  """The tokens [rows, L] that `path_encoder` reads as column j."""
  tokens = np.zeros((rows, caption_length), np.int32)
  tokens[:, 0] = j
  return tokens


def interpolation_grid(config, spec, params, inputs: dict, e_a, e_b, rng, rows: int, cols: int,
                       path: str = "linear") -> np.ndarray:
  """uint8 [rows * cols, H, W, C], row-major: the family of `config` (built with its frozen `inputs`,
  the text encoder replaced by `path_encoder`) sampled at each column's embedding with one key."""
  if config.get("model", {}).get("condition", "") != "caption" or "encode_text" not in inputs:
    raise GenfamError(f"the {config.family!r} model in this workdir is not conditioned on a caption embedding "
                      f"(model.condition={config.get('model', {}).get('condition', '')!r}, no text encoder): "
                      f"caption interpolation needs a caption GAN or caption diffusion model")
  table = embedding_path(e_a, e_b, cols, path)                                     # [cols, E]
  family = registry.make_family(config, spec, **dict(inputs, encode_text=path_encoder(table)))
  columns = [np.asarray(family.sample(params, rng, rows, column_tokens(j, rows, spec.caption_length)))
             for j in range(cols)]                                                  # cols x [rows, H, W, C]
  return np.stack(columns, axis=1).reshape(rows * cols, *columns[0].shape[1:])


def main(argv=None) -> str:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a trained caption GAN or caption diffusion workdir")
  parser.add_argument("--a", required=True, help="the first sentence")
  parser.add_argument("--b", required=True, help="the second sentence")
  parser.add_argument("--rows", type=int, default=6)
  parser.add_argument("--cols", type=int, default=9)
  parser.add_argument("--path", choices=PATHS, default="linear")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  from genfam.data import captions
  from genfam.loop import train
  from genfam.settings import config_files
  config = config_files.saved(args.workdir)
  if config is None:
    raise SystemExit(f"error: no trained model in {args.workdir} (no config.json)")
  run = train.Run(config, args.workdir)
  state, _, meta = run.restore_or_fail()
  if "encode_text" not in run.family_inputs:
    raise SystemExit(f"error: {args.workdir} holds a {config.family!r} model without a caption embedding; "
                     "name a caption GAN or caption diffusion workdir")
  encode = run.family_inputs["encode_text"]
  e_a, e_b = (encode(captions.encode_sentence(s, run.spec)[None])[0] for s in (args.a, args.b))
  grid = interpolation_grid(config, run.spec, run.family.eval_params(state), run.family_inputs, e_a, e_b,
                            jax.random.PRNGKey(args.seed), args.rows, args.cols, args.path)
  out = args.out or os.path.join(args.workdir, "caption_interpolation.png")
  images.save_grid(out, grid, run.spec.num_bins, columns=args.cols)
  print(f"step {int(meta['step'])}: {args.rows} x {args.cols} {args.path} interpolation {args.a!r} -> {args.b!r}: "
        f"{out}", flush=True)
  return out


if __name__ == "__main__":
  main()
