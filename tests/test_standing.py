"""Standing statistics (restore.recompute): BN moving statistics recomputed for the weights
being evaluated."""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import features
from hamgan.evaluation import metrics
from hamgan.evaluation import restore
from hamgan.layers.normalization import ConditionalBatchNorm
from hamgan.models import Generator
from test_evaluation import StandInClassifier

Z_DIM, CLASSES = 8, 5


def _generator(seed=0):
  tf.keras.utils.set_random_seed(seed)
  g = Generator(image_size=32, num_classes=CLASSES, ch=4, z_dim=Z_DIM, context="none")
  restore.build_generator(g)
  return g


def _spoil(g, shift=2.0, scale=30.0):
  """Moving statistics that describe another network (as the EMA G's copied ones do)."""
  for layer in restore.batch_norm_layers(g):
    layer.moving_mean.assign(layer.moving_mean + shift)
    layer.moving_variance.assign(layer.moving_variance * scale)


def test_moving_statistics_equal_the_pooled_moments_of_each_layers_inputs(monkeypatch):
  g = _generator()
  _spoil(g)
  others = {v.name: v.numpy().copy() for v in g.variables if "moving" not in v.name}
  assert restore.recompute(g, num_batches=3, batch_size=20, seed=4) == 7
  stored = {id(l): (l.moving_mean.numpy().copy(), l.moving_variance.numpy().copy())
            for l in restore.batch_norm_layers(g)}
  # Nothing but the moving statistics changed (no spectral-norm step, no weights).
  for v in g.variables:
    if "moving" not in v.name:
      np.testing.assert_array_equal(v.numpy(), others[v.name], err_msg=v.name)

  # Another way: every BN layer in batch mode through its class, its inputs kept as
  # NumPy arrays, the same z and labels in the same batches; moments pooled in NumPy.
  seen = {}
  original = ConditionalBatchNorm.call

  def recording_call(self, x, y=None, training=None):
    seen.setdefault(id(self), []).append(x.numpy().astype(np.float64))
    return original(self, x, y, training=True)

  monkeypatch.setattr(ConditionalBatchNorm, "call", recording_call)
  z, y = features.latent_inputs(60, CLASSES, Z_DIM, seed=4)
  for start in range(0, 60, 20):
    g((tf.constant(z[start:start + 20]), tf.constant(y[start:start + 20])), training=False)
  assert set(seen) == set(stored)
  for layer_id, batches in seen.items():
    x = np.concatenate(batches)  # (60, H, W, C)
    mean, variance = stored[layer_id]
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, x.var(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)


def test_spoiled_statistics_give_a_worse_fid_than_standing_ones(tmp_path):
  path = str(tmp_path / "clf")
  tf.saved_model.save(StandInClassifier(seed=2), path)
  clf = classifier_lib.load_classifier(path)
  g = _generator(1)
  # "Real" images: what G makes with batch statistics, on z of another seed.
  z, y = features.latent_inputs(400, CLASSES, Z_DIM, seed=11)
  layers = restore.batch_norm_layers(g)
  with restore.batch_statistics_mode(layers, lambda layer, x: None):
    real = np.concatenate([g((tf.constant(z[i:i + 100]), tf.constant(y[i:i + 100])),
                             training=False).numpy() for i in range(0, 400, 100)])
  real_pool = clf(real)["pool_3"].numpy()
  _spoil(g)

  def fid():
    feats = features.generated_features(g, clf, 400, CLASSES, Z_DIM, batch_size=100, seed=3)
    return metrics.frechet_distance(real_pool, feats.pool_3)

  spoiled = fid()
  restore.recompute(g, num_batches=8, batch_size=50, seed=5)
  fixed = fid()
  assert fixed < 0.2 * spoiled, (fixed, spoiled)


def test_bad_settings_are_named():
  g = _generator()
  with pytest.raises(ValueError, match="num_batches=0 must be a positive int"):
    restore.recompute(g, 0, 10)
  with pytest.raises(ValueError, match="batch_size=-1"):
    restore.recompute(g, 2, -1)
