"""hamgan.evaluation.manifold: precision/recall/density/coverage against a dense NumPy path."""
import numpy as np
import pytest
import scipy.spatial.distance

from hamgan.evaluation import manifold


def _reference(real, fake, pr_k=3, dc_k=5):
  """The four metrics from full distance matrices (SciPy cdist, float64, sorted rows)."""
  d_rr = scipy.spatial.distance.cdist(real, real)
  d_ff = scipy.spatial.distance.cdist(fake, fake)
  d_fr = scipy.spatial.distance.cdist(fake, real)
  r_pr = np.sort(d_rr, axis=1)[:, pr_k]  # column 0 is the point itself
  r_dc = np.sort(d_rr, axis=1)[:, dc_k]
  f_pr = np.sort(d_ff, axis=1)[:, pr_k]
  precision = np.mean([(d_fr[j] <= r_pr).any() for j in range(len(fake))])
  recall = np.mean([(d_fr[:, i] <= f_pr).any() for i in range(len(real))])
  density = np.mean([(d_fr[j] < r_dc).sum() for j in range(len(fake))]) / dc_k
  coverage = np.mean([d_fr[:, i].min() < r_dc[i] for i in range(len(real))])
  return dict(precision=precision, recall=recall, density=density, coverage=coverage)


def _features(seed, n, dim=16, shift=0.0, scale=1.0):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((n, dim)) * scale + shift).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_metrics_equal_dense_numpy_reference(dtype):
  real = _features(0, 300)
  fake = _features(1, 250, shift=0.3, scale=1.2)  # partly overlapping: values in (0, 1)
  ref = _reference(real.astype(np.float64), fake.astype(np.float64))
  got = manifold.manifold_metrics(real, fake, dtype=dtype)
  for name in ref:
    assert got[name] == pytest.approx(ref[name], abs=1e-6), name
  assert 0.05 < ref["precision"] < 0.95 and 0.05 < ref["recall"] < 0.95, ref
  assert 0.05 < ref["coverage"] < 0.95 and ref["density"] > 0.05, ref


def test_blocked_equals_dense_and_other_ks():
  real, fake = _features(2, 101, dim=8), _features(3, 77, dim=8, shift=0.2)
  dense = manifold.manifold_metrics(real, fake, pr_k=2, dc_k=4, block_size=10**6)
  for block in (1, 7, 50):
    assert manifold.manifold_metrics(real, fake, pr_k=2, dc_k=4, block_size=block) == dense
  ref = _reference(real.astype(np.float64), fake.astype(np.float64), pr_k=2, dc_k=4)
  for name in ref:
    assert dense[name] == pytest.approx(ref[name], abs=1e-6), name
  radii = manifold.knn_radii(real, 3, dtype=np.float64, block_size=13)
  d = scipy.spatial.distance.cdist(real, real)
  np.testing.assert_allclose(np.sqrt(radii), np.sort(d, axis=1)[:, 3], rtol=1e-6)


def test_identical_sets_give_one_and_far_clusters_zero():
  x = _features(4, 200)
  same = manifold.manifold_metrics(x, x.copy())
  assert same["precision"] == same["recall"] == same["coverage"] == 1.0
  far = manifold.manifold_metrics(x, x + 100.0)
  assert far == dict(precision=0.0, recall=0.0, density=0.0, coverage=0.0)
  assert manifold.precision_recall(x, x.copy()) == (1.0, 1.0)
  assert manifold.precision_recall(x, x + 100.0) == (0.0, 0.0)
  assert manifold.density_coverage(x, x + 100.0) == (0.0, 0.0)


def test_mode_collapse_shows_in_recall_and_coverage_not_precision():
  real = _features(5, 400, dim=8)
  collapsed = real[:20].repeat(20, axis=0) + 0.01 * _features(6, 400, dim=8)
  precision, recall = manifold.precision_recall(real, collapsed)
  _, coverage = manifold.density_coverage(real, collapsed)
  assert precision > 0.95 and recall < 0.2 and coverage < 0.4  # 20 of 400 modes


def test_bad_inputs_are_named():
  x = _features(7, 10)
  with pytest.raises(ValueError, match="fake_features has 5 features.*same classifier"):
    manifold.manifold_metrics(x, _features(8, 10, dim=5))
  with pytest.raises(ValueError, match="k=10 must be"):
    manifold.precision_recall(x, x, k=10)
  with pytest.raises(ValueError, match="real_features has shape"):
    manifold.precision_recall(x[0], x)
  with pytest.raises(ValueError, match="NaN"):
    manifold.precision_recall(np.full((4, 3), np.nan), x[:, :3])
  with pytest.raises(ValueError, match="block_size=0"):
    manifold.manifold_metrics(x, x, block_size=0)


def test_blocks_dealt_to_the_strategy_devices_give_the_same_values(two_cpu_strategy):
  real, fake = _features(9, 90, dim=8), _features(10, 70, dim=8, shift=0.2)
  alone = manifold.manifold_metrics(real, fake, block_size=16)
  with two_cpu_strategy.scope():
    assert manifold._devices() == list(two_cpu_strategy.extended.worker_devices)
    assert len(manifold._devices()) == 2
    assert manifold.manifold_metrics(real, fake, block_size=16) == alone
