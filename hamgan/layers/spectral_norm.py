"""Spectrally normalised convolution, dense and embedding layers.

docs/design.md, 'Spectral normalisation'.

The kernel W is viewed as a matrix of shape (fan_in, fan_out) (a conv kernel
(k, k, C_in, C_out) as (k*k*C_in, C_out)). A non-trainable vector u of shape
(1, fan_out) tracks W's leading right-singular direction: every training call
does one power iteration

    v = l2n(u W^T),  u <- l2n(v W),  sigma = v W u^T

with u and v held constant for the gradient, and writes u back. Inference reads
u and does not write it. The layer then uses W / max(1, sigma) (the SAGAN
reference, `exact=False`) or W / sigma (`exact=True`, for the 1x1 convolutions
of attention and of the Hamburger breads).

Distribution: u is updated from replicated W and u, so every replica computes
the same new u; the variable aggregates with ONLY_FIRST_REPLICA so that the
write is legal in a replica context and u stays identical everywhere. u is an
ordinary layer weight, so tf.train.Checkpoint saves it.

The spectral norm is computed in float32 even under a bfloat16/float16 policy
(the kernel is created with autocasting off) and the normalised kernel is then
cast to the compute dtype.
"""
import tensorflow as tf

from hamgan.layers.utils import static_training

_EPS = 1e-12


def _l2_normalize(x):
  return x * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(x)), _EPS))


def power_iteration(w_2d, u):
  """One power-iteration step on a (fan_in, fan_out) matrix.

  Returns (u_new, v, sigma) with u_new (1, fan_out), v (1, fan_in), and
  sigma = v W u_new^T, all stopped for the gradient except sigma's
  dependence on W.
  """
  v = tf.stop_gradient(_l2_normalize(tf.matmul(u, w_2d, transpose_b=True)))
  u_new = tf.stop_gradient(_l2_normalize(tf.matmul(v, w_2d)))
  sigma = tf.reshape(tf.matmul(tf.matmul(v, w_2d), u_new, transpose_b=True), [])
  return u_new, v, sigma


class _SpectralNormMixin:
  """Shared state and maths of the spectrally normalised layers."""

  def _init_sn(self, exact):
    self.exact = bool(exact)

  def _build_sn(self, fan_out):
    self.u = self.add_weight(
        name="sn_u", shape=(1, fan_out),
        initializer=tf.keras.initializers.RandomNormal(stddev=1.0),
        trainable=False, dtype=tf.float32,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        experimental_autocast=False)
    # The last computed spectral norm; the variable keeps its old name "sn_sigma"
    # (checkpoint keys unchanged) while the attribute says what it is.
    self.spectral_norm = self.add_weight(
        name="sn_sigma", shape=(), initializer="ones", trainable=False,
        dtype=tf.float32,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        experimental_autocast=False)

  def _normalized(self, kernel, training):
    """Returns kernel / sigma (or / max(1, sigma)) in float32."""
    shape = tf.shape(kernel)
    w_2d = tf.reshape(kernel, [-1, kernel.shape[-1]])

    if static_training(training):
      u_new, _, sigma = power_iteration(w_2d, tf.convert_to_tensor(self.u))
      self.u.assign(u_new)
      self.spectral_norm.assign(tf.stop_gradient(sigma))
    else:
      _, _, sigma = power_iteration(w_2d, tf.convert_to_tensor(self.u))
    divisor = sigma if self.exact else tf.maximum(sigma, 1.0)
    return tf.reshape(w_2d / divisor, shape)


def _glorot():
  return tf.keras.initializers.GlorotUniform()


class SNConv2D(_SpectralNormMixin, tf.keras.layers.Layer):
  """2-D convolution with a spectrally normalised kernel (NHWC)."""

  def __init__(self, filters, kernel_size, strides=1, padding="same",
               use_bias=True, exact=False, **kwargs):
    super().__init__(**kwargs)
    if int(filters) < 1:
      raise ValueError(f"SNConv2D filters={filters!r}: expected a positive integer.")
    padding = str(padding).lower()
    if padding not in ("same", "valid"):
      raise ValueError(f"SNConv2D padding={padding!r}: expected 'same' or 'valid'.")
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.strides = int(strides)
    self.padding = padding
    self.use_bias = bool(use_bias)
    self._init_sn(exact)

  def build(self, input_shape):
    if len(input_shape) != 4:
      raise ValueError(f"{self.name}: input shape {tuple(input_shape)} is not 4-D; "
                       "expected NHWC (batch, height, width, channels).")
    in_ch = int(input_shape[-1])
    k = self.kernel_size
    self.kernel = self.add_weight(
        name="kernel", shape=(k, k, in_ch, self.filters), initializer=_glorot(),
        trainable=True, dtype=tf.float32, experimental_autocast=False)
    self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer="zeros",
                                 trainable=True) if self.use_bias else None)
    self._build_sn(self.filters)
    super().build(input_shape)

  def normalized_kernel(self, training=None, dtype=None):
    """The kernel a call convolves with, in `dtype` (default: the compute dtype).

    A training call does the power iteration (and writes u) here, so a caller that
    applies the kernel itself (the Hamburger folds its 1x1 upper bread into the
    low-rank factors) calls this once in place of calling the layer.
    """
    return tf.cast(self._normalized(self.kernel, training), dtype or self.compute_dtype)

  def call(self, x, training=None):
    kernel = self.normalized_kernel(training)
    y = tf.nn.conv2d(x, kernel, strides=self.strides, padding=self.padding.upper())
    if self.bias is not None:
      y = tf.nn.bias_add(y, tf.cast(self.bias, y.dtype))
    return y

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                  padding=self.padding, use_bias=self.use_bias, exact=self.exact)
    return config


class SNDense(_SpectralNormMixin, tf.keras.layers.Layer):
  """Fully connected layer with a spectrally normalised kernel."""

  def __init__(self, units, use_bias=True, exact=False, **kwargs):
    super().__init__(**kwargs)
    if int(units) < 1:
      raise ValueError(f"SNDense units={units!r}: expected a positive integer.")
    self.units = int(units)
    self.use_bias = bool(use_bias)
    self._init_sn(exact)

  def build(self, input_shape):
    in_dim = int(input_shape[-1])
    self.kernel = self.add_weight(
        name="kernel", shape=(in_dim, self.units), initializer=_glorot(),
        trainable=True, dtype=tf.float32, experimental_autocast=False)
    self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer="zeros",
                                 trainable=True) if self.use_bias else None)
    self._build_sn(self.units)
    super().build(input_shape)

  def call(self, x, training=None):
    kernel = tf.cast(self._normalized(self.kernel, training), self.compute_dtype)
    y = tf.matmul(x, kernel)
    if self.bias is not None:
      y = y + tf.cast(self.bias, y.dtype)
    return y

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, use_bias=self.use_bias, exact=self.exact)
    return config


class SNEmbedding(_SpectralNormMixin, tf.keras.layers.Layer):
  """Class embedding (num_classes, dim) with a spectrally normalised table.

  Used for the discriminator's projection term <embed(y), h>.
  """

  def __init__(self, num_classes, dim, exact=False, **kwargs):
    super().__init__(**kwargs)
    if int(num_classes) < 1 or int(dim) < 1:
      raise ValueError(f"SNEmbedding(num_classes={num_classes!r}, dim={dim!r}): "
                       "expected positive integers.")
    self.num_classes = int(num_classes)
    self.dim = int(dim)
    self._init_sn(exact)

  def build(self, input_shape):
    self.embeddings = self.add_weight(
        name="embeddings", shape=(self.num_classes, self.dim), initializer=_glorot(),
        trainable=True, dtype=tf.float32, experimental_autocast=False)
    self._build_sn(self.dim)
    super().build(input_shape)

  def call(self, y, training=None):
    table = tf.cast(self._normalized(self.embeddings, training), self.compute_dtype)
    return tf.gather(table, tf.cast(y, tf.int32))

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes, dim=self.dim, exact=self.exact)
    return config
