"""Tests of the SAGAN / YLG attention layers and the YLG masks."""
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers import attention
from hamgan.layers.attention import (FullSelfAttention, LocalAttention, SelfAttention,
                                     head_patterns, manhattan_order, query_masks, ylg_masks)

# ----------------------------------------------------------------------------- masks


def test_manhattan_order_of_4x4_and_2x3_grids():
  order = [tuple(c) for c in manhattan_order(4, 4)]
  assert order[:6] == [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)]
  assert order[6:10] == [(0, 3), (1, 2), (2, 1), (3, 0)]
  assert order[-1] == (3, 3)
  assert sorted(order) == [(i, j) for i in range(4) for j in range(4)]
  # A non-square grid, written out by hand.
  assert [tuple(c) for c in manhattan_order(2, 3)] == [
      (0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (1, 2)]


def _expected_row_counts(name, n):
  """Ones per row of a 1-D pattern, counted analytically (not from the masks)."""
  s = math.floor(math.sqrt(n))
  r = np.arange(n)
  if name == "left_floor":
    return r % s + 1
  if name == "right_floor":  # from r to the end of its block (the last one may be short)
    return np.minimum((r // s + 1) * s, n) - r
  if name == "left_repetitive":  # columns s-1, 2s-1, ... plus r unless r is one of them
    return n // s + (r % s != s - 1)
  if name == "right_repetitive":  # columns 0, s, .. up to n - s, plus r unless among them
    return n // s + ((r % s != 0) | (r > n - s))
  raise AssertionError(name)


@pytest.mark.parametrize("grid", [(4, 4), (4, 5), (8, 8), (8, 16)])
def test_ylg_mask_density_per_pattern(grid):
  gh, gw = grid
  n = gh * gw
  masks = ylg_masks(gh, gw)
  assert masks.shape == (8, n, n) and masks.dtype == np.float32
  assert set(np.unique(masks)) <= {0.0, 1.0}
  assert head_patterns(8) == ["right_floor", "right_repetitive"] * 2 + [
      "left_floor", "left_repetitive"] * 2
  order = manhattan_order(gh, gw)
  raster = order[:, 0] * gw + order[:, 1]
  for h, name in enumerate(head_patterns(8)):
    # Row of the r-th cell in ESA order has the documented number of ones.
    counts = masks[h].sum(axis=1)[raster]
    np.testing.assert_array_equal(counts, _expected_row_counts(name, n))


def _rule(name, a, b, s, n):
  """Whether 1-D position a sees b (of n, stride s), from the written definitions of
  docs/design.md, 'YLG local attention' (RightRepetitive as the public YLG code builds
  it: the LeftRepetitive columns moved s - 1 to the left)."""
  if name == "left_floor":
    return a - a % s <= b <= a
  if name == "right_floor":
    return b - b % s <= a <= b
  if name == "left_repetitive":
    return b % s == s - 1 or a == b
  # b is a LeftRepetitive column (b + s - 1, with (b + s - 1) % s == s - 1) moved left.
  return ((b + s - 1) % s == s - 1 and b + s - 1 < n) or a == b


def _np_rank(gh, gw):
  """Cell -> position in the Manhattan (ESA) enumeration: by i + j, ties by i."""
  cells = sorted(itertools.product(range(gh), range(gw)), key=lambda c: (c[0] + c[1], c[0]))
  return {cell: k for k, cell in enumerate(cells)}


def _np_query_masks(height, width, heads, align):
  """(heads, H*W, n_k) masks of every query pixel, from the definitions alone."""
  gh, gw = height // 2, width // 2
  n, s = gh * gw, math.isqrt(gh * gw)
  rank = _np_rank(gh, gw)
  names = ["right_floor", "right_repetitive"] * (heads // 4) + [
      "left_floor", "left_repetitive"] * (heads // 4)
  masks = np.zeros((heads, height * width, n), np.float32)
  for q in range(height * width):
    i, j = divmod(q, width)
    # cell: the pixel's own 2x2 cell; raster: the grid mask tiled over raster blocks.
    cell = (i // 2, j // 2) if align == "cell" else divmod(q % n, gw)
    for key in range(n):
      for h, name in enumerate(names):
        masks[h, q, key] = _rule(name, rank[cell], rank[divmod(key, gw)], s, n)
  return masks


def test_right_repetitive_on_a_non_square_grid_is_the_public_codes():
  # An 8x16 key grid (a 16x32 map): n = 128, s = 11. YLG's RightRepetitive takes the
  # columns c with c % 11 == 10 (10, 21, ..., 120) moved 10 to the left: 0, 11, ..., 110,
  # so 121 (a multiple of 11 below 128) is not among them.
  pattern = attention.pattern_1d("right_repetitive", 128)
  assert attention.stride_for(128) == 11
  np.testing.assert_array_equal(np.flatnonzero(pattern[5]), [0, 5, 11, 22, 33, 44, 55,
                                                             66, 77, 88, 99, 110])
  assert pattern[121, 121] == 1 and pattern[:121, 121].sum() == 0
  q = query_masks(16, 32, align="raster")
  np.testing.assert_array_equal(q, _np_query_masks(16, 32, 8, "raster"))


def test_ylg_masks_lay_the_pattern_along_the_manhattan_order():
  gh, gw = 4, 6
  n, s = gh * gw, math.floor(math.sqrt(gh * gw))
  masks = ylg_masks(gh, gw)
  rank = {tuple(c): k for k, c in enumerate(manhattan_order(gh, gw))}
  for h, name in enumerate(head_patterns(8)):
    for qa, qb in itertools.product(range(n), repeat=2):
      cell_a, cell_b = divmod(qa, gw), divmod(qb, gw)  # raster index -> (i, j)
      want = _rule(name, rank[cell_a], rank[cell_b], s, n)
      assert masks[h, qa, qb] == float(want), (name, cell_a, cell_b)


@pytest.mark.parametrize("align", ["cell", "raster"])
def test_every_query_sees_a_key_and_itself(align):
  q = query_masks(8, 12, align=align)  # 8x12 pixels, 4x6 key grid
  assert q.shape == (8, 96, 24)
  assert (q.sum(axis=-1) >= 1).all()
  if align == "cell":
    # Each pixel sees its own downsampled cell in every head (the diagonal).
    cells = [(i // 2) * 6 + j // 2 for i in range(8) for j in range(12)]
    assert (q[:, np.arange(96), cells] == 1).all()


def test_query_alignment_cell_versus_raster():
  grid = ylg_masks(4, 4)
  cell, raster = query_masks(8, 8, align="cell"), query_masks(8, 8, align="raster")
  for i, j in itertools.product(range(8), repeat=2):
    q = i * 8 + j
    np.testing.assert_array_equal(cell[:, q], grid[:, (i // 2) * 4 + j // 2])
    np.testing.assert_array_equal(raster[:, q], grid[:, q % 16])
  assert not np.array_equal(cell, raster)


def test_two_heads_reach_every_key():
  masks = ylg_masks(8, 8) > 0
  names = head_patterns(8)

  def reach(a, b):  # query -> key through head a, then that key as query through head b
    return (masks[a].astype(np.int32) @ masks[b].astype(np.int32)) > 0

  # Right-to-left heads (0-3) and left-to-right heads (4-7): a repetitive head then a
  # floor head of the same direction reaches every key in two hops.
  assert (names[1], names[0]) == ("right_repetitive", "right_floor")
  assert (names[5], names[4]) == ("left_repetitive", "left_floor")
  assert reach(1, 0).all() and reach(5, 4).all()
  # No single head does, and two floor heads stay inside one block of s keys.
  assert not any(masks[h].all() for h in range(8))
  assert reach(0, 4).sum(axis=1).max() == 8
  # The union of all heads over two layers connects everything.
  union = masks.any(axis=0).astype(np.int32)
  assert ((union @ union) > 0).all()

  # The same holds for pixels: head 1 at the queries, keys pooled from their 2x2
  # pixels, which as queries attend through head 0 (cell alignment).
  q = query_masks(16, 16, align="cell").astype(np.int32)  # (heads, 256 pixels, 64 keys)
  pool = q.shape[1]
  cell_of = np.array([(i // 2) * 8 + j // 2 for i in range(16) for j in range(16)])
  pixels_of_cell = (cell_of[None, :] == np.arange(64)[:, None]).astype(np.int32)
  assert pixels_of_cell.shape == (64, pool)
  assert ((q[1] @ pixels_of_cell @ q[0]) > 0).all()


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
    query_masks(3, 4)
  with pytest.raises(ValueError, match="unknown pattern 'diagonal'"):
    attention.pattern_1d("diagonal", 16)
