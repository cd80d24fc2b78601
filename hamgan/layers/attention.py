"""Attention context modules: SAGAN self-attention and YLG local attention.

These are the baselines that the Hamburger is compared against (docs/design.md,
'SAGAN self-attention' and 'YLG local attention'), plus the paper's Table-3 full
non-local block for the benchmark.

* `SelfAttention` (SAGAN): queries at every pixel, keys and values max-pooled
  2x2, one head, `x + gamma * o` with the residual scale gamma (attribute
  `residual_scale`) initialised to 0.
* `LocalAttention` (YLG, "Your Local GAN"): the same block split into heads
  whose logits get additive sparse masks. The masks are 1-D sparse-transformer
  patterns laid on the key grid along the Manhattan enumeration (ESA), so that
  neighbouring positions of the 1-D pattern stay neighbours in 2-D.
* `FullSelfAttention`: C -> C query, key and value projections, no pooling, an
  N x N attention map; only the benchmark uses it (`sa_full`).

The mask helpers (`manhattan_order`, `ylg_masks`, `query_masks`, ...) live in
`hamgan.layers.ylg_masks` (pure NumPy) and are re-exported here.
"""
import tensorflow as tf

from hamgan.layers.spectral_norm import SNConv2D
from hamgan.layers.ylg_masks import (  # pylint: disable=unused-import
    ALIGNS, MASK_VALUE, check_even_grid, check_heads, head_patterns, manhattan_order,
    pattern_1d, query_masks, stride_for, ylg_masks)


def _check_input_shape(layer, shape, multiple, even=True):
  """Validates an NHWC input shape and returns (H, W, C) with H, W possibly None."""
  shape = tf.TensorShape(shape)
  if shape.rank != 4:
    raise ValueError(f"{layer.name}: input shape {shape} is not 4-D; expected NHWC "
                     "(batch, height, width, channels). Reshape the feature map.")
  h, w, c = shape[1], shape[2], shape[3]
  if c is None or c % multiple:
    heads = getattr(layer, "heads", 1)
    raise ValueError(f"{layer.name}: channels={c}; expected a known multiple of {multiple} "
                     f"({type(layer).__name__} projects to C/8 and C/2 channels, split "
                     f"over {heads} head(s)). Change the width of the feature map"
                     f"{' or the number of heads' if heads > 1 else ''}.")
  for name, value in (("height", h), ("width", w)):
    if even and value is not None and value % 2:
      raise ValueError(f"{layer.name}: {name}={value} is odd; expected an even size "
                       "because keys and values are max-pooled 2x2. Place the module at "
                       "an even resolution.")
  return h, w, c


def _sn1x1(filters, name, policy):
  """Exactly spectrally normalised 1x1 conv without bias (the SAGAN reference)."""
  return SNConv2D(filters, 1, use_bias=False, exact=True, name=name, dtype=policy)


def _pool(x):
  return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")


class _AttentionBase(tf.keras.layers.Layer):
  """Shared plumbing: the residual scale gamma and the context-module call signature."""

  _channel_multiple = 8
  _pools = True  # keys and values are max-pooled 2x2, so H and W must be even

  def _check(self, x):
    return _check_input_shape(self, x.shape, self._channel_multiple, self._pools)

  def _add_residual_scale(self):
    # Residual scale, 0 at init so the block starts as the identity; the variable
    # keeps its old name "sigma", so checkpoints of earlier runs restore unchanged.
    self.residual_scale = self.add_weight(name="sigma", shape=(), initializer="zeros",
                                          trainable=True)

  def _build_sagan_projections(self, input_shape, c):
    """theta, phi (C -> C/8), g (C -> C/2), o (C/2 -> C) and the residual scale."""
    policy = self.dtype_policy
    self.theta = _sn1x1(c // 8, "theta", policy)
    self.phi = _sn1x1(c // 8, "phi", policy)
    self.g = _sn1x1(c // 2, "g", policy)
    self.o = _sn1x1(c, "o", policy)
    shape = tf.TensorShape(input_shape)
    for conv in (self.theta, self.phi, self.g):
      conv.build(shape)
    self.o.build(shape[:-1].concatenate([c // 2]))
    self._add_residual_scale()

  def call(self, x, y=None, training=None, segments=1):
    """Returns x + gamma * attention(x); y (labels) and segments (no random draws
    here) are accepted and ignored."""
    del y, segments
    out, _ = self._attend(x, training)
    return x + tf.cast(self.residual_scale, x.dtype) * out

  def attention_map(self, x, training=False):
    """The softmax attention weights (float32), for inspection and tests."""
    if not self.built:
      self.build(x.shape)
    x = tf.cast(x, self.compute_dtype)
    return self._attend(x, training)[1]

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)


class SelfAttention(_AttentionBase):
  """SAGAN self-attention (docs/design.md, 'SAGAN self-attention').

  theta = SN1x1(x, C/8); phi = maxpool(SN1x1(x, C/8)); g = maxpool(SN1x1(x, C/2));
  attn = softmax(theta phi^T) over the N/4 keys; o = SN1x1(attn g, C);
  returns x + gamma * o. The 1x1 convs have no bias and exact spectral norm;
  the logits are put in float32 for the softmax under mixed precision.
  """

  def build(self, input_shape):
    _, _, c = _check_input_shape(self, input_shape, self._channel_multiple)
    self._build_sagan_projections(input_shape, c)
    super().build(input_shape)

  def _attend(self, x, training):
    self._check(x)
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
    n, n_k = h * w, (h // 2) * (w // 2)
    theta = tf.reshape(self.theta(x, training=training), [b, n, c // 8])  # (B, N, C/8)
    phi = tf.reshape(_pool(self.phi(x, training=training)), [b, n_k, c // 8])  # (B, N/4, C/8)
    g = tf.reshape(_pool(self.g(x, training=training)), [b, n_k, c // 2])  # (B, N/4, C/2)
    logits = tf.matmul(theta, phi, transpose_b=True)  # (B, N, N/4)
    attn = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    out = tf.matmul(tf.cast(attn, g.dtype), g)  # (B, N, C/2)
    out = tf.reshape(out, [b, h, w, c // 2])  # back to NHWC
    return self.o(out, training=training), attn


class LocalAttention(_AttentionBase):
  """YLG local sparse attention (docs/design.md, 'YLG local attention').

  The SAGAN block split into `heads` heads (theta and phi C/8, g C/2, each
  split evenly), logits theta phi^T per head without 1/sqrt(d), plus
  (1 - mask) * -1000, softmax over the (H/2)*(W/2) keys, heads concatenated
  back to C/2 (channel k belongs to head k // (C/2/heads)), SN1x1 to C, and
  x + gamma * o. Parameters are the same as SAGAN's.

  Masks (`ylg_masks`): heads 0..heads/2-1 right-to-left (RightFloor,
  RightRepetitive, ...), the others left-to-right (LeftFloor, LeftRepetitive,
  ...), laid on the key grid in Manhattan (ESA) order with stride
  floor(sqrt(n_k)). Query alignment:
    align="cell" (default): pixel (i, j) uses the mask row of its own
      downsampled cell (i // 2, j // 2), so "what a pixel may see" follows its
      position in the image.
    align="raster": the public YLG code's layout; the (n_k, n_k) mask is
      tiled over consecutive raster blocks of n_k queries, and pixel
      q = i * W + j uses row q % n_k (another cell's row).
  The masks are NumPy constants made once in `build`; the layer needs a static
  height and width. The cost is a dense masked attention, as in the reference.
  """

  def __init__(self, heads=8, align="cell", **kwargs):
    super().__init__(**kwargs)
    self.heads = check_heads(heads)
    if align not in ALIGNS:
      raise ValueError(f"LocalAttention align={align!r}: expected one of {ALIGNS} "
                       "('cell' aligns each query with its own downsampled cell).")
    self.align = align
    self._channel_multiple = 8 * self.heads

  def build(self, input_shape):
    h, w, c = _check_input_shape(self, input_shape, self._channel_multiple)
    h, w = check_even_grid(h, w, self.name)
    self._build_sagan_projections(input_shape, c)
    self._grid = (h // 2, w // 2)
    # Additive logit bias per (head, key-grid query cell, key): 0 or -1000.
    self._bias = (1.0 - ylg_masks(h // 2, w // 2, self.heads)) * MASK_VALUE
    super().build(input_shape)

  def _to_blocks(self, t):
    """(B, H, W, c) -> (B, 4 * n_k, c): queries in blocks of n_k sharing one mask.

    align="cell": block (di, dj) holds pixel (2 * ci + di, 2 * cj + dj) at row
    ci * gw + cj, so each pixel meets the mask row of its own cell.
    align="raster": plain raster order; block k holds pixels k*n_k .. k*n_k + n_k - 1.
    """
    gh, gw = self._grid
    c = t.shape[-1]
    if self.align == "cell":
      t = tf.reshape(t, [-1, gh, 2, gw, 2, c])  # (B, ci, di, cj, dj, c)
      t = tf.transpose(t, [0, 2, 4, 1, 3, 5])  # (B, di, dj, ci, cj, c)
    return tf.reshape(t, [-1, 4 * gh * gw, c])

  def _from_blocks(self, t):
    """Inverse of `_to_blocks`: (B, 4 * n_k, c) -> (B, H, W, c)."""
    gh, gw = self._grid
    c = t.shape[-1]
    if self.align == "cell":
      t = tf.reshape(t, [-1, 2, 2, gh, gw, c])  # (B, di, dj, ci, cj, c)
      t = tf.transpose(t, [0, 3, 1, 4, 2, 5])  # (B, ci, di, cj, dj, c)
    return tf.reshape(t, [-1, 2 * gh, 2 * gw, c])

  def _attend(self, x, training):
    """Returns (o, attn) with attn (B, heads, 4, n_k, n_k) in block order."""
    h, w, c = self._check(x)
    if (h, w) != (2 * self._grid[0], 2 * self._grid[1]):
      raise ValueError(f"{self.name}: input is {h}x{w} but the masks were built for "
                       f"{2 * self._grid[0]}x{2 * self._grid[1]}; expected the same spatial "
                       "size on every call. Build a new layer for another resolution.")
    b = tf.shape(x)[0]
    n_k, k = self._grid[0] * self._grid[1], self.heads
    d, dg = c // 8 // k, c // 2 // k
    theta = self._to_blocks(self.theta(x, training=training))  # (B, 4*n_k, C/8)
    theta = tf.reshape(theta, [b, 4, n_k, k, d])  # (B, block, query, heads, d)
    phi = tf.reshape(_pool(self.phi(x, training=training)), [b, n_k, k, d])
    g = tf.reshape(_pool(self.g(x, training=training)), [b, n_k, k, dg])
    logits = tf.einsum("bpqhd,bkhd->bhpqk", theta, phi)  # (B, heads, 4, n_k, n_k)
    bias = tf.constant(self._bias[:, None], tf.float32)  # (heads, 1, n_k, n_k)
    attn = tf.nn.softmax(tf.cast(logits, tf.float32) + bias, axis=-1)
    out = tf.einsum("bhpqk,bkhd->bpqhd", tf.cast(attn, g.dtype), g)  # (B, 4, n_k, heads, dg)
    out = self._from_blocks(tf.reshape(out, [b, 4 * n_k, c // 2]))  # heads concatenated, NHWC
    return self.o(out, training=training), attn

  def attention_map(self, x, training=False):
    """Softmax weights (B, heads, H*W, n_k), float32, queries in raster order."""
    attn = super().attention_map(x, training)
    n_k = self._grid[0] * self._grid[1]
    # (B, heads, 4, n_k, n_k) -> (B*heads, 4*n_k, n_k) -> un-permute the queries.
    shape = tf.shape(attn)
    flat = tf.reshape(attn, [-1, 4 * n_k, n_k])
    raster = tf.reshape(self._from_blocks(flat), [shape[0], self.heads, 4 * n_k, n_k])
    return raster

  def get_config(self):
    config = super().get_config()
    config.update(heads=self.heads, align=self.align)
    return config


class FullSelfAttention(_AttentionBase):
  """The paper's Table-3 non-local block: C -> C projections, no pooling.

  q, k, v = SN1x1(x, C) each; attn = softmax(q k^T) over all N pixels (an
  N x N map); o = SN1x1(attn v, C); returns x + gamma * o. Only the module
  benchmark uses it (`sa_full`), to compare against the paper's figures.
  """

  _channel_multiple = 1
  _pools = False

  def build(self, input_shape):
    _, _, c = _check_input_shape(self, input_shape, 1, even=False)
    policy = self.dtype_policy
    self.query = _sn1x1(c, "query", policy)
    self.key = _sn1x1(c, "key", policy)
    self.value = _sn1x1(c, "value", policy)
    self.o = _sn1x1(c, "o", policy)
    shape = tf.TensorShape(input_shape)
    for conv in (self.query, self.key, self.value, self.o):
      conv.build(shape)
    self._add_residual_scale()
    super().build(input_shape)

  def _attend(self, x, training):
    self._check(x)
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
    q = tf.reshape(self.query(x, training=training), [b, h * w, c])  # (B, N, C)
    k = tf.reshape(self.key(x, training=training), [b, h * w, c])
    v = tf.reshape(self.value(x, training=training), [b, h * w, c])
    logits = tf.matmul(q, k, transpose_b=True)  # (B, N, N)
    attn = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    out = tf.reshape(tf.matmul(tf.cast(attn, v.dtype), v), [b, h, w, c])  # NHWC
    return self.o(out, training=training), attn
