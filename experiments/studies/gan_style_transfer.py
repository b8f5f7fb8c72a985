"""Style transfer with the GAN's style encoder: real test images' styles rendered under other conditions.

  python -m experiments.studies.gan_style_transfer --workdir=runs/style_encoder --to=0,1,2,3,4,5,6,7,8,9
  python -m experiments.studies.gan_style_transfer --workdir=runs/style_encoder_caption \\
      --to="a photo of a dark shirt;a photo of a light sandal;a photo of a large bag" --out=style.png

WORKDIR is a trained configs/style_encoder.py run; its frozen GAN (model.generator_workdir) is restored
with it (`genfam.loop.frozen.family_inputs`). Row i: the first column is test image x_i, then one column
per target condition c_j (--to: labels for a label GAN, ';'-separated sentences for a caption GAN),
each the picture floor(K G(S(x_i), c_j)) of the generator at x_i's inferred noise s_i = S(x_i) (Reed et
al. 2016, section 4.4): the content of c_j in x_i's style. Writes a PNG (default WORKDIR/style_transfer.png).
"""
import argparse
import os

import jax.numpy as jnp
import numpy as np

from genfam.evaluation import images


def transfer_grid(encode, enc_params, generator, real, conditions: dict, num_bins: int) -> np.ndarray:
  """real uint8 [N, H, W, C]; conditions: {'label': [M]} or {'caption': [M, L]} -> uint8 [N * (M + 1), H, W, C],
  row i = (x_i, G(S(x_i), c_1), .., G(S(x_i), c_M))."""
  styles = encode(enc_params, real)                                                     # [N, L]
  c = generator.functions["condition"](generator.params, {k: jnp.asarray(v) for k, v in conditions.items()})
  n, m = len(real), c.shape[0]
  z = jnp.repeat(styles, m, axis=0)                                                      # [N * M, L]
  cc = jnp.tile(c, (n, 1))                                                               # [N * M, E]
  mean = generator.functions["generate"](generator.params, z, cc)
  pictures = np.asarray(jnp.clip(jnp.floor(mean * num_bins), 0, num_bins - 1).astype(jnp.uint8))
  pictures = pictures.reshape(n, m, *real.shape[1:])
  return np.concatenate([np.asarray(real)[:, None], pictures], axis=1).reshape(n * (m + 1), *real.shape[1:])


def main(argv=None) -> str:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a trained configs/style_encoder.py workdir")
  parser.add_argument("--to", required=True, help="labels '0,1,..' (label GAN) or sentences 'a;b;..' (caption GAN)")
  parser.add_argument("--images", type=int, default=8, help="the first N test images")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  from genfam.data import captions
  from genfam.evaluation import sample_quality
  from genfam.loop import train
  from genfam.settings import config_files
  config = config_files.saved(args.workdir)
  if config is None or config.get("family") != "style_encoder":
    raise SystemExit(f"error: {args.workdir} holds no trained style encoder (configs/style_encoder.py)")
  run = train.Run(config, args.workdir)
  state, _, meta = run.restore_or_fail()
  generator = run.family_inputs["generator"]
  if generator.config.model.condition == "caption":
    conditions = {"caption": np.stack([captions.encode_sentence(s.strip(), run.spec) for s in args.to.split(";")])}
  else:
    conditions = {"label": np.asarray([int(v) for v in args.to.split(",")], np.int32)}
  real = sample_quality.reference(run.sources["test"], args.images)["image"]
  grid = transfer_grid(run.family.exports["encode"], run.family.eval_params(state), generator, real, conditions,
                       run.spec.num_bins)
  out = args.out or os.path.join(args.workdir, "style_transfer.png")
  images.save_grid(out, grid, run.spec.num_bins, columns=len(next(iter(conditions.values()))) + 1)
  print(f"step {int(meta['step'])}: {len(real)} test images x {args.to!r}: {out}", flush=True)
  return out


if __name__ == "__main__":
  main()
