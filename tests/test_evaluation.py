"""hamgan.evaluation: metrics against NumPy/SciPy, the real cache, strategies, errors."""
import os

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from hamgan import images as images_lib
from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import evaluator
from hamgan.evaluation import features
from hamgan.evaluation import metrics
from hamgan.evaluation import real_stats

S = 8  # generator output size in these tests
CLASSIFIER_SIZE = 12  # the stand-in classifier's declared input size


class StandInClassifier(tf.Module):
  """A tiny random conv net with TF-Hub Inception's outputs, pool_3 as (B, 1, 1, D)."""

  def __init__(self, seed, dim=10, classes=7):
    super().__init__()
    rng = np.random.default_rng(seed)
    self.image_size = tf.Variable(CLASSIFIER_SIZE, trainable=False)
    self.kernel = tf.Variable(rng.normal(0, 0.6, (3, 3, 3, dim)).astype(np.float32))
    self.bias = tf.Variable(rng.normal(0, 0.1, (dim,)).astype(np.float32))
    self.dense = tf.Variable(rng.normal(0, 1.5, (dim, classes)).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    h = tf.nn.relu(tf.nn.conv2d(images, self.kernel, 1, "SAME") + self.bias)
    pool = tf.reduce_mean(h, axis=[1, 2])  # (B, D)
    return {"logits": pool @ self.dense, "pool_3": pool[:, None, None, :]}


class StandInGenerator(tf.keras.Model):
  """G((z, y)) -> tanh(linear(z) + embedding(y)) as (B, S, S, 3)."""

  def __init__(self, num_classes=4, z_dim=6, image_size=S):
    super().__init__()
    self.num_classes, self.z_dim, self.image_size = num_classes, z_dim, image_size
    self.linear = tf.keras.layers.Dense(image_size * image_size * 3)
    self.embed = tf.keras.layers.Embedding(num_classes, image_size * image_size * 3)
    self.calls = 0

  def call(self, inputs, training=None):
    self.calls += 1
    z, y = inputs
    h = self.linear(z) + self.embed(y)
    return tf.tanh(tf.reshape(h, (-1, self.image_size, self.image_size, 3)))  # (B, S*S*3) -> NHWC


@pytest.fixture(scope="module")
def saved_classifiers(tmp_path_factory):
  """Two stand-in classifiers saved as SavedModels (different weights)."""
  paths = []
  for seed in (0, 1):
    path = str(tmp_path_factory.mktemp(f"classifier{seed}"))
    tf.saved_model.save(StandInClassifier(seed), path)
    paths.append(path)
  return paths


def _numpy_features(classifier_path, images):
  """pool_3 and logits by calling the SavedModel directly (no hamgan streaming)."""
  loaded = tf.saved_model.load(classifier_path)
  x = tf.image.resize(tf.constant(images, tf.float32), (CLASSIFIER_SIZE, CLASSIFIER_SIZE),
                      method="bilinear")
  out = loaded(x)
  return out["pool_3"].numpy().reshape(len(images), -1), out["logits"].numpy()


def _fid_reference(a, b):
  a, b = a.astype(np.float64), b.astype(np.float64)
  ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # unbiased (ddof=1)
  covmean = scipy.linalg.sqrtm(ca @ cb).real
  return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * covmean))


def _is_reference(logits):
  logits = logits.astype(np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  py = p.mean(0)
  return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(py)), axis=1))))


def _real_images(n, seed=5):
  """Smooth random colour blobs in [-1, 1] (N, S, S, 3): structured, not noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:S, 0:S] / (S - 1)
  centre = rng.uniform(0, 1, (n, 2, 1, 1))
  width = rng.uniform(0.15, 0.5, (n, 1, 1))
  blob = np.exp(-((xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2) / width ** 2)
  colour = rng.uniform(-1, 1, (n, 1, 1, 3))
  return np.clip(blob[..., None] * colour * 1.5, -1, 1).astype(np.float32)


class CountingData:
  """Makes a batched dataset of fixed images and counts the batches actually read."""

  def __init__(self, images, batch=16):
    self.images, self.batch, self.reads = images, batch, 0

  def __call__(self):
    def gen():
      for i in range(0, len(self.images), self.batch):
        self.reads += 1
        yield self.images[i:i + self.batch]
    spec = tf.TensorSpec((None,) + self.images.shape[1:], tf.float32)
    return tf.data.Dataset.from_generator(gen, output_signature=spec)


def test_preprocessing_is_bilinear_resize_in_range():
  x = np.linspace(-1, 1, 2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
  y = classifier_lib.to_classifier_input(x, 8).numpy()
  assert y.shape == (2, 8, 8, 3) and y.min() >= -1 and y.max() <= 1
  # Half-pixel bilinear 4 -> 8: output pixel 1 sits at input coordinate 0.25 (0.75*x0+0.25*x1).
  np.testing.assert_allclose(y[0, 0, 1], 0.75 * x[0, 0, 0] + 0.25 * x[0, 0, 1], rtol=1e-5)
  with pytest.raises(ValueError, match="not \\(B, H, W, 3\\)"):
    classifier_lib.to_classifier_input(np.zeros((2, 4, 4, 1), np.float32), 8)


def test_fid_and_is_equal_numpy_scipy_on_the_same_features(saved_classifiers, tmp_path):
  clf = classifier_lib.load_classifier(saved_classifiers[0])
  g = StandInGenerator()
  g.build([(None, 6), (None,)])
  real_images = _real_images(120)
  key = real_stats.RealStatsKey("blobs", "train", S, 120, clf.identity)
  real, cached = real_stats.load_or_compute(key, CountingData(real_images), clf,
                                            cache_dir=str(tmp_path))
  assert not cached and real.count == 120
  values, feats = evaluator.evaluate_generator(g, clf, real, num_samples=150,
                                               num_classes=4, z_dim=6, batch_size=32, seed=3)
  # Independent path: same z and labels, G in one call, the SavedModel called directly.
  z, y = features.latent_inputs(150, 4, 6, seed=3)
  gen_pool, gen_logits = _numpy_features(saved_classifiers[0], g((z, y), training=False).numpy())
  real_pool, _ = _numpy_features(saved_classifiers[0], real_images)
  np.testing.assert_allclose(feats.pool_3, gen_pool, rtol=1e-5, atol=1e-6)
  fid_ref = _fid_reference(real_pool, gen_pool)
  assert fid_ref > 1e-3
  assert values["fid150/blobs-train"] == pytest.approx(fid_ref, rel=1e-4)
  assert values["is150"] == pytest.approx(_is_reference(gen_logits), rel=1e-5)
  splits = [_is_reference(p) for p in np.array_split(gen_logits, 10)]
  assert values["is150_10split_mean"] == pytest.approx(np.mean(splits), rel=1e-5)
  assert values["is150_10split_std"] == pytest.approx(np.std(splits), rel=1e-4)
  # The cache holds the real statistics with the unbiased covariance.
  np.testing.assert_allclose(real.cov, np.cov(real_pool.astype(np.float64), rowvar=False),
                             rtol=1e-4, atol=1e-9)
  assert real.inception_score > 1.0


def test_is_reaches_class_count_for_confident_balanced_logits():
  logits = np.full((40, 4), -20.0)
  logits[np.arange(40), np.arange(40) % 4] = 20.0
  assert metrics.inception_score(logits) == pytest.approx(4.0, rel=1e-6)
  mean, std = metrics.split_inception_score(logits, 10)
  assert mean == pytest.approx(4.0, rel=1e-6) and std < 1e-6


def test_fid_self_is_zero_and_grows_with_noise(saved_classifiers):
  clf = classifier_lib.load_classifier(saved_classifiers[0])
  images = _real_images(200, seed=9)
  base = features.dataset_features(tf.data.Dataset.from_tensor_slices(images).batch(50),
                                   clf, 200).pool_3
  assert abs(metrics.frechet_distance(base, base)) < 1e-6
  rng = np.random.default_rng(0)
  noise = rng.standard_normal(images.shape).astype(np.float32)
  fids = []
  for sigma in (0.02, 0.05, 0.1, 0.2, 0.4, 0.8):
    noisy = np.clip(images + sigma * noise, -1, 1)
    feats = clf(noisy)["pool_3"].numpy()
    fids.append(metrics.frechet_distance(base, feats))
  assert all(b > a for a, b in zip(fids, fids[1:])), fids
  assert fids[0] > 0 and fids[-1] > 50 * fids[0]


def test_kid_is_near_zero_for_same_distribution_and_larger_otherwise():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
  same, _ = metrics.kernel_distance(a, b)
  shifted, std = metrics.kernel_distance(a, b + 1.0)
  assert abs(same) < 0.05 and shifted > 1.0 and 0 < std < 0.1 * shifted


def test_real_cache_reused_and_recomputed_on_any_key_change(saved_classifiers, tmp_path):
  clf0 = classifier_lib.load_classifier(saved_classifiers[0])
  clf1 = classifier_lib.load_classifier(saved_classifiers[1])
  data = CountingData(_real_images(64), batch=16)
  cache = str(tmp_path)
  base = real_stats.RealStatsKey("blobs", "train", S, 64, clf0.identity)

  def run(key, clf):
    before = data.reads
    stats, cached = real_stats.load_or_compute(key, data, clf, cache_dir=cache)
    return stats, cached, data.reads - before

  first, cached, reads = run(base, clf0)
  assert not cached and reads == 4
  again, cached, reads = run(base, clf0)
  assert cached and reads == 0  # no real image read at all
  np.testing.assert_array_equal(again.activations, first.activations)
  np.testing.assert_allclose(again.cov, first.cov)
  for changed, clf in [
      (real_stats.RealStatsKey("blobs", "test", S, 64, clf0.identity), clf0),
      (real_stats.RealStatsKey("blobs", "train", 16, 64, clf0.identity), clf0),
      (real_stats.RealStatsKey("blobs", "train", S, 32, clf0.identity), clf0),
      (real_stats.RealStatsKey("blobs", "train", S, 64, clf1.identity), clf1)]:
    stats, cached, reads = run(changed, clf)
    assert not cached and reads > 0, changed
    assert stats.key == changed
  assert run(base, clf0)[1]  # the first entry is still valid
  # A file whose stored key does not match (e.g. copied over) is not trusted.
  path = os.path.join(cache, base.filename())
  other = os.path.join(cache, real_stats.RealStatsKey("blobs", "test", S, 64,
                                                      clf0.identity).filename())
  os.replace(other, path)
  stats, cached, reads = run(base, clf0)
  assert not cached and reads == 4
  # A damaged file is recomputed too.
  with open(path, "wb") as f:
    f.write(b"not an npz")
  assert not run(base, clf0)[1]
  with pytest.raises(ValueError, match="key.classifier"):
    real_stats.load_or_compute(base, data, clf1, cache_dir=cache)


def test_mirrored_features_equal_single_device(saved_classifiers, two_cpu_strategy):
  clf = classifier_lib.load_classifier(saved_classifiers[0])
  g = StandInGenerator()
  g.build([(None, 6), (None,)])
  # 25 samples in global batches of 10 (padded to 30, the extra 5 dropped), 5 per replica.
  one = features.generated_features(g, clf, 25, 4, 6, batch_size=10, seed=7)
  two = features.generated_features(g, clf, 25, 4, 6, batch_size=10, seed=7,
                                    strategy=two_cpu_strategy)
  assert two_cpu_strategy.num_replicas_in_sync == 2
  assert one.pool_3.shape == two.pool_3.shape == (25, 10)
  np.testing.assert_allclose(two.pool_3, one.pool_3, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(two.logits, one.logits, rtol=1e-5, atol=1e-5)
  # Real batches of 8 from 29 images: the last one (5) splits unevenly, 3 + 2.
  real = features.dataset_features(
      tf.data.Dataset.from_tensor_slices(_real_images(29)).batch(8), clf, 29,
      strategy=two_cpu_strategy)
  np.testing.assert_allclose(real.pool_3, clf(_real_images(29))["pool_3"].numpy(),
                             rtol=1e-5, atol=1e-6)
  # Labelled batches: the labels come back too, in order, across the replicas.
  labels = (np.arange(29) * 7 % 5).astype(np.int32)
  labelled = features.dataset_features(
      tf.data.Dataset.from_tensor_slices((_real_images(29), labels)).batch(8), clf, 29,
      strategy=two_cpu_strategy)
  np.testing.assert_array_equal(labelled.labels, labels)
  np.testing.assert_allclose(labelled.pool_3, real.pool_3, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(two.labels, features.latent_inputs(25, 4, 6, seed=7)[1])


def test_progress_line_rate_and_eta():
  lines = []
  progress = features.Progress("generated", 50000, every_s=0.0, write=lines.append)
  progress.start -= 100.0  # as if 100 s had passed
  progress.update(10000)
  # 10000 images in ~100 s: ~100 img/s, 40000 to go: ETA ~400 s = 0:06:40.
  assert lines and "10000/50000 images (20.0%)" in lines[0]
  rate = float(lines[0].split(", ")[1].split(" img/s")[0])
  assert 95 < rate <= 100.0 and "ETA 0:06:4" in lines[0]


def test_generation_step_traced_once_per_generator_and_released(saved_classifiers):
  import gc  # pylint: disable=g-import-not-at-top
  import weakref  # pylint: disable=g-import-not-at-top
  clf = classifier_lib.load_classifier(saved_classifiers[0])

  def run_twice():
    # G lives in this frame only: TensorFlow's tracing may snapshot a caller frame's
    # f_locals, and a stale snapshot of the test's own frame would keep G alive.
    g = StandInGenerator()
    first = features.generated_features(g, clf, 10, 4, 6, batch_size=5).pool_3
    traces = g.calls  # G's Python code runs only while tracing
    second = features.generated_features(g, clf, 10, 4, 6, batch_size=5).pool_3
    assert traces >= 1 and g.calls == traces
    np.testing.assert_array_equal(first, second)
    return weakref.ref(g)

  alive = run_twice()
  gc.collect()
  assert alive() is None  # the cached step does not keep G (and its weights) alive


def test_latent_inputs_are_balanced_seeded_and_truncated():
  z, y = features.latent_inputs(1000, 7, 5, seed=2)
  counts = np.bincount(y, minlength=7)
  assert counts.max() - counts.min() <= 1
  z2, y2 = features.latent_inputs(1000, 7, 5, seed=2)
  np.testing.assert_array_equal(z, z2)
  np.testing.assert_array_equal(y, y2)
  zt, _ = features.latent_inputs(1000, 7, 5, seed=2, truncation=0.5)
  assert np.abs(zt).max() <= 0.5 and np.abs(z).max() > 2
  with pytest.raises(ValueError, match="truncation"):
    features.latent_inputs(10, 2, 3, truncation=-1.0)


def test_sample_grid_rows_are_classes():
  g = StandInGenerator(num_classes=3)
  grid = images_lib.sample_grid(g, 3, 6, per_class=5)
  assert grid.shape == (3 * S, 5 * S, 3) and grid.dtype == np.uint8
  # Row r is class r: its first tile equals G's sample for (z_0, class r).
  z, y, rows = images_lib.class_grid_inputs(3, 6, per_class=5)
  ref = images_lib.to_uint8(g((z, y), training=False).numpy())
  np.testing.assert_array_equal(grid[S:2 * S, :S], ref[5])
  assert rows == 3 and list(y[::5]) == [0, 1, 2]
