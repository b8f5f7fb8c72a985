"""Sample quality on a classifier's features: FID and KID, as plain numpy functions.

Features are the domain classifier's penultimate activations (Inception cannot
be downloaded and does not fit 28x28 grey images); both metrics compare the
feature distribution of N generated images with that of N real test images.

FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the
two feature sets,
  FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)),
with Tr((S_1 S_2)^(1/2)) computed as the sum of the square roots of the
(non-negative) eigenvalues of S_1^(1/2) S_2 S_1^(1/2), which is symmetric, so
no complex matrix square root is needed. Biased in N: compare at equal N.

KID (Binkowski et al. 2018): the unbiased estimate of the squared MMD with the
cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over `num_subsets`
random subsets of `subset_size` of each set; reported with the standard
deviation over subsets. Unbiased: its expectation is 0 when both sets come from
one distribution, whatever N. The kernel assumes features of order 1 (as
Inception's pooled features are); raw classifier features of norm ~100 put
x.y / d in the hundreds and KID in the hundreds of thousands, so the evaluation
first standardizes every feature with a reference set's mean and standard
deviation (`standardizer`: train-split statistics), which makes KID invariant
to any per-feature affine rescaling of the features.
"""
import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """features [N, F] -> (mean [F], covariance [F, F]) in float64 (unbiased covariance)."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"need at least 2 feature vectors [N, F], got shape {x.shape}")
  return x.mean(axis=0), np.cov(x, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
  """||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)) between two Gaussians."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
  root1 = _sqrt_psd(cov1)
  middle = root1 @ cov2 @ root1
  trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
  value = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)
  return max(value, 0.0)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """FID between two feature sets [N_a, F], [N_b, F]."""
  return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def standardizer(features: np.ndarray, floor: float = 0.01):
  """features [N, F] (the statistics set, e.g. train images' features) -> a function mapping
  features [M, F] to (features - mean) / max(std, floor * median(std)), float64, with mean and std
  per feature over the N rows. The floor keeps a unit that is almost dead on the statistics set (a
  ReLU feature that rarely fires) from turning a sample's small activation into a huge value; a
  constant feature maps to 0."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"need at least 2 feature vectors [N, F] for the statistics, got shape {x.shape}")
  mean, std = x.mean(axis=0), x.std(axis=0)
  least = floor * float(np.median(std))
  scale = np.maximum(std, least) if least > 0 else np.where(std > 0, std, 1.0)
  return lambda f: (np.asarray(f, np.float64) - mean) / scale


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased squared MMD of sets x [m, F], y [n, F] under the cubic polynomial kernel:
  mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, n = len(x), len(y)
  kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
               - 2.0 * kxy.mean())


def kid(features_a: np.ndarray, features_b: np.ndarray, *, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
  """-> (KID, its standard deviation over subsets): the mean of `mmd2_unbiased` over
  `num_subsets` pairs of random subsets of min(subset_size, N_a // 2, N_b // 2) vectors
  (at most half of each set, so the subsets differ and their spread means something:
  subsets as large as the sets would all be the sets themselves, with spread 0)."""
  rng = np.random.default_rng(seed)
  size = min(subset_size, len(features_a) // 2, len(features_b) // 2)
  if size < 2:
    raise ValueError("KID needs at least 4 feature vectors in each set (subsets of half of each)")
  values = [mmd2_unbiased(features_a[rng.choice(len(features_a), size, replace=False)],
                          features_b[rng.choice(len(features_b), size, replace=False)])
            for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))
