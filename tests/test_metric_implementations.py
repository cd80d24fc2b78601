"""hamgan's float64 FID / IS / KID (metrics.*_float64) against TF-GAN and independent references.

The TF-GAN comparison runs where TF-GAN imports (the `tpu` stack); the reference
comparisons run on both stacks.
"""
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import tensorflow as tf

from hamgan.evaluation import metrics

TF_VERSION = tuple(int(p) for p in tf.__version__.split(".")[:2])


def _activations(seed, n, dim=48, shift=0.0):
  """Correlated, non-centred features, like a classifier's pool layer."""
  rng = np.random.default_rng(seed)
  mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
  return np.abs(rng.normal(size=(n, dim)) @ mixing + shift + 0.5)


def _logits(seed, n=300, classes=10):
  return np.random.default_rng(seed).normal(scale=3.0, size=(n, classes))


def test_implementation_matches_the_stack():
  # TF-GAN 2.1.0 imports only on TF < 2.16; there it must be the one in use.
  expected = "tfgan-2.1.0" if TF_VERSION < (2, 16) else "hamgan-float64"
  assert metrics.implementation_name() == expected


@pytest.mark.skipif(metrics.tfgan is None, reason="TF-GAN imports only on the tpu stack")
def test_float64_formulas_agree_with_tfgan_on_the_same_activations():
  real, gen = _activations(1, 257), _activations(2, 230, shift=0.3)
  logits = _logits(3)
  tfgan = metrics.tfgan
  f64 = lambda x: tf.constant(x, tf.float64)
  want_fid = float(tfgan.eval.frechet_classifier_distance_from_activations(f64(real), f64(gen)))
  want_is = float(tfgan.eval.classifier_score_from_logits(f64(logits)))
  # 50 rows per block at most: 6 blocks of unequal sizes on both sides.
  want_kid, want_std = (float(v) for v in
                        tfgan.eval.kernel_classifier_distance_and_std_from_activations(
                            f64(real), f64(gen), max_block_size=50))
  got_kid, got_std = metrics.kernel_distance_float64(real, gen, 50)
  assert metrics.frechet_distance_float64(real, gen) == pytest.approx(want_fid, rel=1e-6)
  assert metrics.inception_score_float64(logits) == pytest.approx(want_is, rel=1e-6)
  assert got_kid == pytest.approx(want_kid, rel=1e-6)
  assert got_std == pytest.approx(want_std, rel=1e-6)
  assert want_fid > 1.0 and want_is > 2.0 and want_kid > 5 * want_std  # not trivially 0


def test_float64_fid_equals_scipy_sqrtm_of_the_product():
  real, gen = _activations(4, 200), _activations(5, 180, shift=0.2)
  s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)  # ddof=1
  want = (np.sum((real.mean(0) - gen.mean(0)) ** 2) + np.trace(s1) + np.trace(s2)
          - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)
  assert metrics.frechet_distance_float64(real, gen) == pytest.approx(want, rel=1e-6)
  assert abs(metrics.frechet_distance_float64(real, real)) < 1e-8


def test_float64_inception_score_equals_the_kl_formula():
  logits = _logits(6)
  p = scipy.special.softmax(logits, axis=1)
  kl = scipy.special.rel_entr(p, p.mean(axis=0)).sum(axis=1)
  assert metrics.inception_score_float64(logits) == pytest.approx(np.exp(kl.mean()), rel=1e-9)


def test_float64_kid_equals_pairwise_sums_over_the_blocks():
  real, gen = _activations(7, 23, dim=5), _activations(8, 21, dim=5, shift=0.1)

  def mmd(r, g):
    k = lambda x, y: (x @ y / 5 + 1) ** 3
    same = lambda xs: np.mean([k(xs[i], xs[j]) for i in range(len(xs))
                               for j in range(len(xs)) if i != j])
    cross = np.mean([k(x, y) for x in r for y in g])
    return same(r) + same(g) - 2 * cross

  # max 8 rows: 3 blocks; 23 rows -> sizes 7, 8, 8; 21 rows -> 7, 7, 7.
  blocks = [mmd(real[a:b], gen[c:d])
            for (a, b), (c, d) in zip([(0, 7), (7, 15), (15, 23)], [(0, 7), (7, 14), (14, 21)])]
  kid, std = metrics.kernel_distance_float64(real, gen, 8)
  assert kid == pytest.approx(np.mean(blocks), rel=1e-9)
  assert std == pytest.approx(np.std(blocks, ddof=1) / np.sqrt(3), rel=1e-9)
  assert np.isnan(metrics.kernel_distance_float64(real, gen, 100)[1])  # one block
