"""Tests of the SAGAN / YLG attention layers (the YLG masks: test_ylg_masks.py)."""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers.attention import FullSelfAttention, LocalAttention, SelfAttention
from test_ylg_masks import _np_query_masks

# ----------------------------------------------------------------------------- layers


def _exact_u(layer):
  """Sets every SN conv's u to W's top right-singular vector, so sigma is exact."""
  for conv in [l for l in layer._flatten_layers() if hasattr(l, "u")]:
    w = conv.kernel.numpy().reshape(-1, conv.kernel.shape[-1])
    conv.u.assign(np.linalg.svd(w)[2][:1].astype(np.float32))


def _normalized(conv):
  w = conv.kernel.numpy().reshape(-1, conv.kernel.shape[-1]).astype(np.float64)
  return w / np.linalg.svd(w, compute_uv=False)[0]


def _np_pool(t):
  b, h, w, c = t.shape
  return t.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _np_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def _np_self_attention(layer, x, masks=None, heads=1):
  """Independent float64 SAGAN / YLG forward pass from the layer's kernels."""
  b, h, w, c = x.shape
  x64 = x.astype(np.float64)
  theta = (x64 @ _normalized(layer.theta)).reshape(b, h * w, heads, -1)
  phi = _np_pool(x64 @ _normalized(layer.phi)).reshape(b, h * w // 4, heads, -1)
  g = _np_pool(x64 @ _normalized(layer.g)).reshape(b, h * w // 4, heads, -1)
  logits = np.einsum("bqhd,bkhd->bhqk", theta, phi)
  if masks is not None:
    logits = logits + (1.0 - masks[None]) * -1000.0
  attn = _np_softmax(logits)
  out = np.einsum("bhqk,bkhd->bqhd", attn, g).reshape(b, h, w, c // 2)
  out = out @ _normalized(layer.o)
  return x64 + float(layer.residual_scale.numpy()) * out, attn


def _x(shape=(2, 8, 8, 64), seed=0):
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def test_self_attention_matches_numpy():
  x = _x()
  layer = SelfAttention()
  layer.build(x.shape)
  _exact_u(layer)
  layer.residual_scale.assign(0.7)
  want, want_attn = _np_self_attention(layer, x)
  got = layer(tf.constant(x), training=False).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  attn = layer.attention_map(tf.constant(x)).numpy()
  np.testing.assert_allclose(attn, want_attn[:, 0], rtol=1e-4, atol=1e-5)
  assert np.abs(got - x).max() > 1e-2  # the attention branch contributes


@pytest.mark.parametrize("align", ["cell", "raster"])
def test_local_attention_matches_numpy_with_masks(align):
  x = _x()
  layer = LocalAttention(heads=8, align=align)
  layer.build(x.shape)
  _exact_u(layer)
  layer.residual_scale.assign(-0.6)
  masks = _np_query_masks(8, 8, heads=8, align=align)  # (8, 64, 16), from the definitions
  want, want_attn = _np_self_attention(layer, x, masks=masks, heads=8)
  got = layer(tf.constant(x), training=False).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  attn = layer.attention_map(tf.constant(x)).numpy()
  np.testing.assert_allclose(attn, want_attn, rtol=1e-4, atol=1e-5)
  # Masked keys get no weight; rows sum to one.
  assert attn[:, masks == 0].max() < 1e-30
  np.testing.assert_allclose(attn.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("cls", [SelfAttention, LocalAttention, FullSelfAttention])
def test_identity_at_zero_residual_scale_and_rows_sum_to_one(cls):
  x = tf.constant(_x(seed=1) * 3.0)
  layer = cls()
  out = layer(x, training=True)
  assert float(layer.residual_scale.numpy()) == 0.0
  np.testing.assert_array_equal(out.numpy(), x.numpy())
  attn = layer.attention_map(x).numpy()
  assert attn.min() >= 0.0
  np.testing.assert_allclose(attn.sum(axis=-1), 1.0, atol=1e-5)
  layer.residual_scale.assign(0.5)
  assert np.abs(layer(x).numpy() - x.numpy()).max() > 1e-2


@pytest.mark.parametrize("cls", [SelfAttention, LocalAttention])
def test_jit_forward_backward_matches_eager(cls):
  x = tf.constant(_x(seed=2))
  layer = cls()
  layer.build(x.shape)
  layer.residual_scale.assign(0.3)

  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.square(layer(x, training=False)))
    return loss, tape.gradient(loss, [x] + layer.trainable_weights)

  eager_loss, eager_grads = step(x)
  jit_loss, jit_grads = tf.function(step, jit_compile=True)(x)
  np.testing.assert_allclose(jit_loss.numpy(), eager_loss.numpy(), rtol=1e-4)
  assert len(jit_grads) == 1 + 5  # x, four kernels, residual scale
  for a, b in zip(jit_grads, eager_grads):
    assert np.isfinite(a.numpy()).all() and np.abs(b.numpy()).max() > 0
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-3)
  # The training call (power iteration writing u) also compiles, and updates u.
  u_before = layer.theta.u.numpy().copy()

  @tf.function(jit_compile=True)
  def train_step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(layer(x, training=True)))
    return loss, tape.gradient(loss, layer.trainable_weights)

  loss, grads = train_step(x)
  assert np.isfinite(loss.numpy()) and all(np.isfinite(g.numpy()).all() for g in grads)
  assert np.abs(layer.theta.u.numpy() - u_before).max() > 1e-6


@pytest.mark.parametrize("cls", [SelfAttention, LocalAttention])
def test_dynamic_batch(cls):
  layer = cls()
  layer.build(tf.TensorShape([None, 8, 8, 64]))
  layer.residual_scale.assign(0.4)
  fn = tf.function(lambda x: layer(x, training=False),
                   input_signature=[tf.TensorSpec([None, 8, 8, 64], tf.float32)])
  x = _x((3, 8, 8, 64), seed=3)
  whole = fn(tf.constant(x)).numpy()
  assert whole.shape == (3, 8, 8, 64)
  # Per-sample results do not depend on the batch they came in.
  np.testing.assert_allclose(fn(tf.constant(x[:1])).numpy(), whole[:1], rtol=1e-5, atol=1e-5)


def test_mirrored_strategy_matches_one_device(two_cpu_strategy):
  x = _x((4, 8, 8, 64), seed=6)
  with two_cpu_strategy.scope():
    layer = LocalAttention()
    layer.build(tf.TensorShape([None, 8, 8, 64]))
  layer.residual_scale.assign(0.5)
  want = layer(tf.constant(x), training=False).numpy()
  dist = two_cpu_strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(x).batch(4))
  per_replica = two_cpu_strategy.run(
      tf.function(lambda t: layer(t, training=False)), args=(next(iter(dist)),))
  got = np.concatenate([t.numpy() for t in two_cpu_strategy.experimental_local_results(
      per_replica)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # A training call keeps every replica's u identical.
  two_cpu_strategy.run(tf.function(lambda t: layer(t, training=True)),
                       args=(next(iter(dist)),))
  us = [u.numpy() for u in layer.theta.u.values]
  np.testing.assert_array_equal(us[0], us[1])


@pytest.mark.parametrize("cls", [SelfAttention, LocalAttention])
def test_mixed_bfloat16_close_to_float32(cls):
  x = tf.constant(_x(seed=4))
  ref = cls()
  ref.build(x.shape)
  ref.residual_scale.assign(1.0)
  want = ref(x, training=False).numpy()
  tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
  low = cls()
  low.build(x.shape)
  low.set_weights(ref.get_weights())
  got = low(x, training=False)
  attn = low.attention_map(x)
  assert got.dtype == tf.bfloat16 and attn.dtype == tf.float32
  got = tf.cast(got, tf.float32).numpy()
  assert np.isfinite(got).all()
  delta = want - x.numpy()  # compare the attention branch, not the residual
  err = np.abs((got - x.numpy()) - delta).mean() / np.abs(delta).mean()
  assert err < 0.02, err


def test_get_config_round_trip():
  for layer in (SelfAttention(name="sa"), LocalAttention(heads=4, align="raster", name="la"),
                FullSelfAttention(name="full")):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
  assert LocalAttention.from_config(LocalAttention(4, "raster").get_config()).align == "raster"
  assert LocalAttention.from_config(LocalAttention(4, "raster").get_config()).heads == 4


@pytest.mark.slow
def test_saved_model_round_trip(tmp_path):
  inputs = tf.keras.Input((8, 8, 64))
  h = SelfAttention(name="sa")(inputs)
  outputs = LocalAttention(name="ylg")(h)
  model = tf.keras.Model(inputs, outputs)
  for layer in model.layers[1:]:
    layer.residual_scale.assign(0.5)
  x = _x((2, 8, 8, 64), seed=5)
  want = model(x, training=False).numpy()
  model.save(str(tmp_path / "model"), save_format="tf")
  restored = tf.keras.models.load_model(
      str(tmp_path / "model"),
      custom_objects={"SelfAttention": SelfAttention, "LocalAttention": LocalAttention})
  np.testing.assert_allclose(restored(x, training=False).numpy(), want, rtol=1e-5, atol=1e-5)
  # The plain SavedModel (no Python classes) serves the same function.
  raw = tf.saved_model.load(str(tmp_path / "model"))
  np.testing.assert_allclose(raw(tf.constant(x), training=False).numpy(), want,
                             rtol=1e-5, atol=1e-5)
  assert abs(float(restored.get_layer("ylg").residual_scale.numpy()) - 0.5) < 1e-7


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("cls, shape, match", [
    (SelfAttention, (2, 8, 64), "not 4-D"),
    (SelfAttention, (2, 7, 8, 64), "height=7 is odd"),
    (SelfAttention, (2, 8, 9, 64), "width=9 is odd"),
    (SelfAttention, (2, 8, 8, 12), "channels=12; expected a known multiple of 8"),
    (LocalAttention, (2, 8, 8, 32), "channels=32; expected a known multiple of 64"),
    (LocalAttention, (2, 8, 8, 8, 64), "not 4-D"),
    (LocalAttention, (2, 6, 5, 64), "width=5 is odd"),
    (FullSelfAttention, (8, 64), "not 4-D"),
])
def test_bad_input_shapes(cls, shape, match):
  with pytest.raises(ValueError, match=match):
    cls()(tf.zeros(shape))


def test_bad_settings_and_sizes():
  with pytest.raises(ValueError, match="heads=3: expected a positive even integer"):
    LocalAttention(heads=3)
  with pytest.raises(ValueError, match="align='diagonal': expected one of"):
    LocalAttention(align="diagonal")
  with pytest.raises(ValueError, match="height is unknown"):
    LocalAttention().build(tf.TensorShape([None, None, 8, 64]))
  layer = LocalAttention()
  layer(tf.zeros((1, 8, 8, 64)))
  with pytest.raises(ValueError, match="input is 4x4 but the masks were built for 8x8"):
    layer(tf.zeros((1, 4, 4, 64)))
  with pytest.raises(ValueError, match="height=3 is odd"):
    LocalAttention().build(tf.TensorShape([None, 3, 4, 64]))
