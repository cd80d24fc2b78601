"""Spectral normalisation: sigma against numpy.linalg.svd, exact/relaxed modes, u in inference."""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding


def _top_singular(w):
  return np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]


def _warm(layer, x, calls=60):
  for _ in range(calls):
    layer(x, training=True)


@pytest.mark.parametrize("exact", [True, False])
def test_conv_sigma_matches_svd_and_normalised_norm(exact):
  layer = SNConv2D(8, 3, exact=exact)
  x = tf.random.normal([2, 6, 6, 5])
  layer(x)
  # Scale the kernel so that its spectral norm is clearly above 1 (relaxed mode divides).
  layer.kernel.assign(layer.kernel * 7.0)
  _warm(layer, x)
  w = layer.kernel.numpy()
  true_sigma = _top_singular(w)
  assert abs(layer.spectral_norm.numpy() - true_sigma) / true_sigma < 0.01
  w_bar = layer._normalized(layer.kernel, training=False).numpy()
  np.testing.assert_allclose(_top_singular(w_bar), 1.0, rtol=0.01)


def test_relaxed_mode_leaves_small_kernels_alone():
  layer = SNDense(4, exact=False)
  x = tf.random.normal([3, 6])
  layer(x)
  layer.kernel.assign(layer.kernel * (0.3 / _top_singular(layer.kernel.numpy())))
  _warm(layer, x)
  w_bar = layer._normalized(layer.kernel, training=False).numpy()
  np.testing.assert_allclose(w_bar, layer.kernel.numpy(), rtol=1e-6)
  assert _top_singular(w_bar) <= 1.0 + 1e-6
  # The output is x W + b with the untouched W.
  np.testing.assert_allclose(layer(x).numpy(), x.numpy() @ layer.kernel.numpy(), rtol=1e-5,
                             atol=1e-6)


def test_exact_mode_rescales_small_kernels_to_unit_norm():
  layer = SNDense(4, exact=True, use_bias=False)
  x = tf.random.normal([3, 6])
  layer(x)
  layer.kernel.assign(layer.kernel * 0.1)
  _warm(layer, x)
  w_bar = layer._normalized(layer.kernel, training=False).numpy()
  np.testing.assert_allclose(_top_singular(w_bar), 1.0, rtol=0.01)


def test_embedding_sigma_and_lookup():
  layer = SNEmbedding(10, 6, exact=True)
  y = tf.constant([0, 3, 9])
  layer(y)
  _warm(layer, y)
  table = layer.embeddings.numpy()
  sigma = _top_singular(table)
  assert abs(layer.spectral_norm.numpy() - sigma) / sigma < 0.01
  np.testing.assert_allclose(layer(y).numpy(), table[[0, 3, 9]] / layer.spectral_norm.numpy(),
                             rtol=1e-4)


def test_u_is_read_not_written_in_inference():
  layer = SNConv2D(4, 1)
  x = tf.random.normal([1, 4, 4, 3])
  layer(x, training=True)
  before = layer.u.numpy().copy()
  for _ in range(3):
    layer(x, training=False)
    layer(x)
  np.testing.assert_array_equal(layer.u.numpy(), before)
  layer(x, training=True)
  assert not np.array_equal(layer.u.numpy(), before)


def test_gradient_treats_u_and_v_as_constants():
  """d(sigma)/dW = v^T u for sigma = v W u^T with u, v held constant."""
  layer = SNDense(5, exact=True, use_bias=False)
  x = tf.random.normal([2, 7])
  layer(x)
  _warm(layer, x, calls=5)
  u = tf.convert_to_tensor(layer.u)
  w2 = tf.convert_to_tensor(layer.kernel)
  v = tf.math.l2_normalize(tf.matmul(u, w2, transpose_b=True))
  u_new = tf.math.l2_normalize(tf.matmul(v, w2))
  with tf.GradientTape() as tape:
    tape.watch(w2)
    from hamgan.layers.spectral_norm import power_iteration
    _, _, sigma = power_iteration(w2, u)
  grad = tape.gradient(sigma, w2).numpy()
  np.testing.assert_allclose(grad, (tf.transpose(v) @ u_new).numpy(), rtol=1e-4, atol=1e-6)


def test_u_stays_identical_across_replicas_and_matches_one_device(two_cpu_strategy):
  x = np.random.RandomState(0).randn(4, 5, 5, 3).astype(np.float32)
  single = SNConv2D(6, 3, name="sn")
  single(x)
  weights = single.get_weights()
  for _ in range(3):
    single(x, training=True)
  with two_cpu_strategy.scope():
    mirrored = SNConv2D(6, 3, name="sn")
    mirrored(x)
    mirrored.set_weights(weights)

  @tf.function
  def step(images):
    return mirrored(images, training=True)

  dataset = two_cpu_strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(x).unbatch().batch(4))
  batch = next(iter(dataset))
  for _ in range(3):
    two_cpu_strategy.run(step, args=(batch,))
  replicas = [v.numpy() for v in mirrored.u.values]
  np.testing.assert_allclose(replicas[0], replicas[1], rtol=1e-6)
  np.testing.assert_allclose(replicas[0], single.u.numpy(), rtol=1e-5, atol=1e-6)


def test_u_is_checkpointed(tmp_path):
  layer = SNConv2D(4, 3)
  x = tf.random.normal([1, 4, 4, 2])
  layer(x, training=True)
  u = layer.u.numpy().copy()
  path = tf.train.Checkpoint(layer=layer).save(str(tmp_path / "ckpt"))
  fresh = SNConv2D(4, 3)
  fresh(x)
  tf.train.Checkpoint(layer=fresh).restore(path).assert_consumed()
  np.testing.assert_array_equal(fresh.u.numpy(), u)


def test_config_round_trip_and_bad_input():
  layer = SNConv2D(3, 3, strides=2, padding="valid", use_bias=False, exact=True)
  clone = SNConv2D.from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()
  with pytest.raises(ValueError, match="not 4-D"):
    SNConv2D(3, 3)(tf.zeros([2, 5, 5]))
  with pytest.raises(ValueError, match="padding"):
    SNConv2D(3, 3, padding="full")
