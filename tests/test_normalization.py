"""Conditional batch norm: init, conditioning, cross-replica moments, moving averages."""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers.normalization import ConditionalBatchNorm


def _np_bn(x, gamma, beta, eps=1e-3):
  mean = x.mean(axis=(0, 1, 2))
  var = x.var(axis=(0, 1, 2))
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_gamma_starts_at_one_and_output_is_plain_bn():
  bn = ConditionalBatchNorm(num_classes=5)
  x = np.random.RandomState(1).randn(6, 3, 3, 4).astype(np.float32) * 3 + 2
  y = np.array([0, 1, 2, 3, 4, 0])
  out = bn(x, y, training=True).numpy()
  np.testing.assert_array_equal(bn.gamma.numpy(), np.ones((5, 4)))
  np.testing.assert_array_equal(bn.beta.numpy(), np.zeros((5, 4)))
  np.testing.assert_allclose(out, _np_bn(x, 1.0, 0.0), rtol=1e-4, atol=1e-4)


def test_labels_select_their_own_scale_and_offset():
  bn = ConditionalBatchNorm(num_classes=3)
  x = np.random.RandomState(2).randn(4, 2, 2, 2).astype(np.float32)
  bn(x, np.zeros(4, np.int32), training=True)
  gamma = np.array([[1., 2.], [3., 4.], [0.5, -1.]], np.float32)
  beta = np.array([[0., 1.], [-2., 0.], [5., 5.]], np.float32)
  bn.gamma.assign(gamma)
  bn.beta.assign(beta)
  y = np.array([2, 0, 1, 2])
  out = bn(x, y, training=True).numpy()
  ref = _np_bn(x, 1.0, 0.0)
  np.testing.assert_allclose(out, ref * gamma[y][:, None, None] + beta[y][:, None, None],
                             rtol=1e-4, atol=1e-4)
  other = bn(x, np.array([1, 1, 1, 1]), training=True).numpy()
  assert np.abs(out - other).max() > 0.5


def test_inference_uses_moving_averages():
  bn = ConditionalBatchNorm(num_classes=None, momentum=0.9)
  rng = np.random.RandomState(3)
  x = (rng.randn(8, 4, 4, 3) * 2 + 5).astype(np.float32)
  bn(x, training=False)
  for _ in range(5):
    bn(x, training=True)
  decay = 1 - 0.9 ** 5
  np.testing.assert_allclose(bn.moving_mean.numpy(), x.mean((0, 1, 2)) * decay, rtol=1e-4)
  np.testing.assert_allclose(bn.moving_variance.numpy(),
                             0.9 ** 5 + x.var((0, 1, 2)) * decay, rtol=1e-4)
  out = bn(x[:2], training=False).numpy()
  mm, mv = bn.moving_mean.numpy(), bn.moving_variance.numpy()
  np.testing.assert_allclose(out, (x[:2] - mm) / np.sqrt(mv + 1e-3), rtol=1e-4, atol=1e-4)
  before = mm.copy()
  bn(x, training=False)
  np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_moments_are_global_under_mirrored_strategy(two_cpu_strategy):
  rng = np.random.RandomState(4)
  # Two halves with very different statistics: per-replica moments would differ a lot.
  x = np.concatenate([rng.randn(4, 3, 3, 2) - 3, rng.randn(4, 3, 3, 2) * 4 + 3]).astype(np.float32)
  y = rng.randint(0, 3, size=8).astype(np.int32)
  with two_cpu_strategy.scope():
    bn = ConditionalBatchNorm(num_classes=3)
    bn(x, y)
  dataset = two_cpu_strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
  batch = next(iter(dataset))

  @tf.function
  def step(images, labels):
    return bn(images, labels, training=True)

  per_replica = two_cpu_strategy.run(step, args=batch)
  out = np.concatenate([t.numpy() for t in two_cpu_strategy.experimental_local_results(per_replica)])
  np.testing.assert_allclose(out, _np_bn(x, 1.0, 0.0), rtol=1e-4, atol=1e-4)
  decay = 1 - 0.999
  for v in bn.moving_mean.values:
    np.testing.assert_allclose(v.numpy(), x.mean((0, 1, 2)) * decay, rtol=1e-4, atol=1e-7)


def test_missing_labels_and_bad_shapes_raise():
  bn = ConditionalBatchNorm(num_classes=4)
  with pytest.raises(ValueError, match="needs labels"):
    bn(tf.zeros([2, 2, 2, 3]), training=True)
  with pytest.raises(ValueError, match="not 4-D"):
    ConditionalBatchNorm()(tf.zeros([2, 3]))
  with pytest.raises(ValueError, match="num_classes"):
    ConditionalBatchNorm(num_classes=0)


def test_config_round_trip_and_bfloat16():
  bn = ConditionalBatchNorm(num_classes=7, momentum=0.99, epsilon=1e-5)
  assert ConditionalBatchNorm.from_config(bn.get_config()).get_config() == bn.get_config()
  tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
  bn16 = ConditionalBatchNorm(num_classes=2)
  x = tf.random.normal([4, 3, 3, 5])
  out = bn16(tf.cast(x, tf.bfloat16), tf.constant([0, 1, 0, 1]), training=True)
  assert out.dtype == tf.bfloat16
  np.testing.assert_allclose(out.numpy().astype(np.float32), _np_bn(x.numpy(), 1.0, 0.0),
                             atol=0.05)
