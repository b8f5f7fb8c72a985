"""FID and KID against closed forms and brute force."""
import numpy as np
import pytest
import scipy.linalg

from genfam.evaluation import fid


def _random_cov(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_a_set_against_itself_is_zero_and_fid_is_symmetric():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(500, 6)), rng.normal(1.0, 2.0, size=(400, 6))
  assert fid.fid(x, x) == pytest.approx(0.0, abs=1e-8)
  assert fid.fid(x, y) == pytest.approx(fid.fid(y, x), rel=1e-10)


def test_frechet_distance_equals_the_analytic_one_between_gaussians():
  rng = np.random.default_rng(1)
  d = 5
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  c1, c2 = _random_cov(rng, d), _random_cov(rng, d)
  # Independent closed form: Tr((C1 C2)^(1/2)) from scipy's general matrix square root.
  want = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
  assert fid.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(want, rel=1e-9)
  # Commuting (diagonal) covariances: sum (sigma1 - sigma2)^2 per dimension.
  s1, s2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
  assert fid.frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2)) == pytest.approx(want, rel=1e-9)


def test_sample_fid_converges_to_the_gaussians_distance():
  rng = np.random.default_rng(2)
  d = 3
  mu1, mu2, c1, c2 = np.zeros(d), np.full(d, 0.5), _random_cov(rng, d), _random_cov(rng, d)
  x = rng.multivariate_normal(mu1, c1, size=200_000)
  y = rng.multivariate_normal(mu2, c2, size=200_000)
  assert fid.fid(x, y) == pytest.approx(fid.frechet_distance(mu1, c1, mu2, c2), rel=0.02, abs=2e-3)


def test_mmd2_unbiased_matches_brute_force():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(7, 4)), rng.normal(0.3, 1.0, size=(9, 4))
  k = lambda a, b: (a @ b / 4 + 1) ** 3
  xx = np.mean([k(x[i], x[j]) for i in range(7) for j in range(7) if i != j])
  yy = np.mean([k(y[i], y[j]) for i in range(9) for j in range(9) if i != j])
  xy = np.mean([k(x[i], y[j]) for i in range(7) for j in range(9)])
  assert fid.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_unbiased_when_both_sets_come_from_one_distribution():
  """The mean of the unbiased MMD^2 over many independent pairs of small sets is 0 within
  its standard error (a biased estimate would be positive at this small size); between
  different distributions KID is clearly positive."""
  rng = np.random.default_rng(4)
  values = [fid.mmd2_unbiased(rng.normal(size=(10, 3)), rng.normal(size=(10, 3))) for _ in range(3000)]
  assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))
  value, spread = fid.kid(rng.normal(size=(300, 3)), rng.normal(1.0, 1.0, size=(300, 3)), num_subsets=20,
                          subset_size=100)
  assert value > 5 * spread / np.sqrt(20) and value > 0


def test_kid_subsets_are_at_most_half_of_each_set_so_their_spread_is_not_zero():
  rng = np.random.default_rng(5)
  a, b = rng.normal(size=(40, 3)), rng.normal(0.5, 1.0, size=(40, 3))
  value, spread = fid.kid(a, b, num_subsets=30, subset_size=1000)
  assert spread > 0
  assert (value, spread) == fid.kid(a, b, num_subsets=30, subset_size=20)
  with pytest.raises(ValueError, match="at least 4"):
    fid.kid(a[:3], b, subset_size=1000)


def test_standardizer_uses_the_statistics_set_and_maps_it_to_zero_mean_unit_variance():
  rng = np.random.default_rng(3)
  stats = rng.normal([5.0, -2.0, 100.0], [0.1, 3.0, 40.0], size=(2000, 3))
  z = fid.standardizer(stats)
  np.testing.assert_allclose(z(stats).mean(axis=0), 0.0, atol=1e-9)
  np.testing.assert_allclose(z(stats).std(axis=0), 1.0, rtol=1e-5)
  other = rng.normal(size=(7, 3))
  np.testing.assert_allclose(z(other), (other - stats.mean(0)) / stats.std(0), rtol=1e-5)
  assert np.all(fid.standardizer(np.ones((5, 2)))(np.ones((3, 2))) == 0.0)   # a constant feature maps to 0
  rare = np.concatenate([stats, np.where(np.arange(2000) < 2, 1e-3, 0.0)[:, None]], axis=1)   # an almost dead unit
  scaled = fid.standardizer(rare)(np.array([[5.0, -2.0, 100.0, 1e-3]]))
  floor = 0.01 * np.median(rare.std(axis=0))
  assert scaled[0, 3] == pytest.approx((1e-3 - rare[:, 3].mean()) / floor)
  with pytest.raises(ValueError):
    fid.standardizer(np.ones((1, 2)))


def test_kid_on_standardized_features_is_invariant_to_rescaling_the_features_and_readable():
  """KID on train-standardized features does not change when every raw feature is rescaled and shifted
  (a classifier's arbitrary feature scale), while KID on raw features does (by orders of magnitude); and
  on the standardized scale a one-standard-deviation shift of the mean reads O(1), the same distribution ~0."""
  rng = np.random.default_rng(4)
  train, real = rng.normal(size=(1000, 8)), rng.normal(size=(400, 8))
  fake = rng.normal(0.5, 1.0, size=(400, 8))
  scale, shift = rng.uniform(5.0, 50.0, size=8), rng.uniform(-100.0, 100.0, size=8)
  args = dict(num_subsets=10, subset_size=200)

  def standardized_kid(t, a, b):
    z = fid.standardizer(t)
    return fid.kid(z(a), z(b), **args)[0]

  base = standardized_kid(train, fake, real)
  moved = standardized_kid(train * scale + shift, fake * scale + shift, real * scale + shift)
  assert moved == pytest.approx(base, rel=1e-9)
  raw, raw_moved = fid.kid(fake, real, **args)[0], fid.kid(fake * scale + shift, real * scale + shift, **args)[0]
  assert raw_moved > 100 * raw
  assert 0.05 < base < 5.0
  assert abs(standardized_kid(train, rng.normal(size=(400, 8)), real)) < 0.05
