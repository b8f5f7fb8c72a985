"""Sample grids: uint8 images -> one tiled PNG."""
import math
import os

import numpy as np


def tile(images: np.ndarray, num_bins: int = 256, columns: int = 0) -> np.ndarray:
  """[N, H, W, C] in {0..K-1} -> [rows*(H+1)-1, cols*(W+1)-1, C] uint8 in 0..255.

  Images are laid out row by row with a one-pixel black border; K-level data
  are stretched to 0..255 for display.
  """
  images = np.asarray(images).astype(np.float64) * (255.0 / (num_bins - 1))
  n, h, w, c = images.shape
  cols = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  out = np.zeros((rows * (h + 1) - 1, cols * (w + 1) - 1, c))
  for i, image in enumerate(images):
    r, q = divmod(i, cols)
    out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = image
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def save_grid(path: str, images: np.ndarray, num_bins: int = 256, columns: int = 0, scale: int = 4) -> str:
  """Writes a tiled PNG of `images` (uint8 [N, H, W, C]) to `path`; returns path."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  grid = tile(images, num_bins, columns)
  grid = np.kron(grid, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else grid
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if grid.shape[-1] == 1:
    plt.imsave(path, grid[..., 0], cmap="gray", vmin=0, vmax=255)
  else:
    plt.imsave(path, grid)
  return path
